//! The arm64 vector of the skinny matmul's tiled body ([`super::tile`]): NEON, 8 f32 lanes in
//! two registers (so an int8 load widens a whole 8-byte vector), with the weight loads that
//! widen bf16 (shift left 16 into 32 bits) and int8 (sign extend twice, convert; the tile then
//! multiplies by the block's scale) to f32 lanes.
//! NEON is part of the arm64 baseline, so this body needs no run-time check.
//!
//! Not used: the dot-product instructions (`sdot`/`udot`) multiply int8 *activations*;
//! rounding the activations to int8 would make the quantization no longer weight-only.

use std::arch::aarch64::{
    float32x4_t, vaddq_f32, vaddvq_f32, vcvtq_f32_s32, vdupq_n_f32, vfmaq_f32, vget_low_s16,
    vget_low_u16, vld1_s8, vld1q_f32, vld1q_u16, vmovl_high_s16, vmovl_s16, vmovl_s8, vmulq_n_f32,
    vreinterpretq_f32_u32, vshll_high_n_u16, vshll_n_u16,
};

use super::matmul::{Rows, Weight};
use super::tile::Vector;

/// Eight f32 lanes: two NEON registers.
#[derive(Clone, Copy)]
pub(super) struct F32x8(float32x4_t, float32x4_t);

impl Vector for F32x8 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(vdupq_n_f32(0.0), vdupq_n_f32(0.0))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(vld1q_f32(p), vld1q_f32(p.add(4)))
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        let bits = vld1q_u16(p);
        Self(
            vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(bits))),
            vreinterpretq_f32_u32(vshll_high_n_u16::<16>(bits)),
        )
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        let wide = vmovl_s8(vld1_s8(p));
        Self(
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide))),
            vcvtq_f32_s32(vmovl_high_s16(wide)),
        )
    }
    #[inline(always)]
    unsafe fn scale(self, s: f32) -> Self {
        Self(vmulq_n_f32(self.0, s), vmulq_n_f32(self.1, s))
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        Self(vfmaq_f32(c.0, a.0, b.0), vfmaq_f32(c.1, a.1, b.1))
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        vaddvq_f32(vaddq_f32(self.0, self.1))
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: a prefetch hint never faults and writes nothing.
        std::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(nostack, readonly, preserves_flags));
    }
}

/// The NEON body of [`super::dispatch::Isa::fill`].
pub(super) fn fill<E: Weight>(dst: &mut [f32], w: Rows<E>, x: &[f32], m: usize, k: usize) {
    // SAFETY: NEON is in the arm64 baseline; the tile checks its slices' bounds.
    unsafe { super::tile::fill::<F32x8, E>(dst, w, x, m, k) }
}
