//! The x86-64 vectors of the skinny matmul's tiled body ([`super::tile`]): AVX2+FMA (`__m256`,
//! 8 lanes) and AVX-512F (`__m512`, 16 lanes), with the weight loads that widen bf16 (zero
//! extend to 32 bits, shift left 16) and int8 (sign extend to 32 bits, convert; the tile then
//! multiplies by the block's scale) to f32 lanes.
//!
//! Not used: AVX-512-BF16 `vdpbf16ps` and VNNI `vpdpbusd`/`vpdpbssd` multiply bf16 or int8
//! *activations*; rounding the activations to them would make the quantization no longer
//! weight-only (and `vdpbf16ps` flushes denormals and rounds its pair sums on its own terms).
//! Measured (docs/benchmarks.md, session 15): a VNNI body with activations rounded to int8 per
//! 16 values was 0.8-1.3x this one per matmul and 1-4% faster per frame on an AVX-512 Xeon, and
//! put the tiny fixture's LM error at 1.9e-2, above the CUDA bf16 path's 1.28e-2.
//! Splitting each f32 activation into three bf16 parts (exact) would cost three `vdpbf16ps`
//! per 32 weights and input row, where widening costs two FMAs and two conversions shared by
//! the tile's input rows.

use std::arch::x86_64::{
    __m128i, __m256, __m256i, __m512, _mm256_castps256_ps128, _mm256_castsi256_ps,
    _mm256_cvtepi32_ps, _mm256_cvtepi8_epi32, _mm256_cvtepu16_epi32, _mm256_extractf128_ps,
    _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_mul_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_slli_epi32, _mm512_castsi512_ps, _mm512_cvtepi32_ps,
    _mm512_cvtepi8_epi32, _mm512_cvtepu16_epi32, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps,
    _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm_add_ps,
    _mm_add_ss, _mm_cvtss_f32, _mm_loadl_epi64, _mm_loadu_si128, _mm_movehl_ps, _mm_prefetch,
    _mm_shuffle_ps, _MM_HINT_T0,
};

use super::matmul::{Rows, Weight};
use super::tile::{fill, Vector};

impl Vector for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        let bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast::<__m128i>()));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(bits))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast::<__m128i>())))
    }
    #[inline(always)]
    unsafe fn scale(self, s: f32) -> Self {
        _mm256_mul_ps(self, _mm256_set1_ps(s))
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(self), _mm256_extractf128_ps(self, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
}

impl Vector for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        let bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast::<__m256i>()));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast::<__m128i>())))
    }
    #[inline(always)]
    unsafe fn scale(self, s: f32) -> Self {
        _mm512_mul_ps(self, _mm512_set1_ps(s))
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        _mm512_reduce_add_ps(self)
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
}

/// [`fill`] on AVX2+FMA. Safety: the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn fill_avx2<E: Weight>(
    dst: &mut [f32],
    w: Rows<E>,
    x: &[f32],
    m: usize,
    k: usize,
) {
    fill::<__m256, E>(dst, w, x, m, k)
}

/// [`fill`] on AVX-512F. Safety: the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fill_avx512<E: Weight>(
    dst: &mut [f32],
    w: Rows<E>,
    x: &[f32],
    m: usize,
    k: usize,
) {
    fill::<__m512, E>(dst, w, x, m, k)
}
