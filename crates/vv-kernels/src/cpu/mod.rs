//! Fused f32 kernels for the CPU, where candle's op-by-op execution (an allocation and a thread
//! barrier per elementwise op, single-threaded GEMV, slow small-m GEMM) dominates a frame's time.
//! Other devices and dtypes use plain candle ops (see `crate::linear` and the decoder's
//! `depthwise`, which choose between the two). The skinny matmul also takes weights packed as
//! bf16 or int8 (`PackedWeight`); its body (AVX-512F, AVX2+FMA, NEON or portable) is chosen at
//! run time (`kernel_names`, `KERNELS_ENV`).

#[cfg(target_arch = "x86_64")]
mod amx;
mod conv;
mod dispatch;
mod feed_forward;
#[cfg(target_arch = "x86_64")]
mod feed_forward_fma;
mod gelu;
mod matmul;
#[cfg(target_arch = "aarch64")]
mod matmul_neon;
#[cfg(target_arch = "x86_64")]
mod matmul_x86;
mod mixer;
mod pointwise;
mod pool;
mod quant;
mod tall;
#[cfg(target_arch = "x86_64")]
mod tall_fma;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod tile;
#[cfg(test)]
mod timing;

use std::sync::{Mutex, PoisonError};

use candle_core::{bail, DType, Layout, Result, Storage, StorageRef, Tensor};

pub use conv::window_conv;
pub use dispatch::{
    cpu_features, kernel_names, simd_kernels, KernelChoice, KernelChoiceError, KernelReport,
    KERNELS_ENV,
};
pub use feed_forward::{tall_feed_forward, FeedForward};
pub use matmul::skinny_matmul;
pub use mixer::{norm_mix, Mixer};
pub use pointwise::{epilogue, Epilogue};
pub use quant::{skinny_matmul_packed, PackedWeight, WeightFormat};
pub use tall::{tall_kernel_available, tall_matmul, TallWeight};

/// Largest row count (time steps) sent to the skinny matmul; taller inputs go to candle's GEMM.
pub const SKINNY_MAX_ROWS: usize = 16;

/// Whether every tensor is an f32 tensor on the CPU (the fused kernels' domain).
pub fn eligible(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Read access to the contiguous f32 data of a CPU tensor.
pub struct CpuSlice<'a> {
    storage: StorageRef<'a>,
    range: std::ops::Range<usize>,
}

impl<'a> CpuSlice<'a> {
    /// Borrows `t`, which must be contiguous (call `.contiguous()` first).
    pub fn new(t: &'a Tensor) -> Result<Self> {
        let (storage, layout): (StorageRef<'a>, &Layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("CPU kernel: tensor {:?} is not contiguous", t.dims())
        };
        Ok(Self {
            storage,
            range: start..end,
        })
    }

    /// The tensor's values in row-major order.
    pub fn get(&self) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(cpu) => Ok(&cpu.as_slice::<f32>()?[self.range.clone()]),
            _ => bail!("CPU kernel: tensor is not on the CPU"),
        }
    }
}

/// Threads of candle's CPU worker pool (asked once: candle reads the environment and the
/// cgroup limits on every call, tens of microseconds).
pub(crate) fn worker_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// Tells the kernels' workers that the caller expects no work for a while (it is about to
/// wait for input), so they sleep now instead of staying ready for the next operation.
pub fn rest_workers() {
    pool::rest();
}

/// Sum of `a[i]·b[i]` in 16 lanes, then across them: vectorises where it is inlined, and gives
/// a row the same bits wherever it is computed (the decoder's norms and head).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    for (a, b) in a.chunks(16).zip(b.chunks(16)) {
        for ((l, a), b) in lanes.iter_mut().zip(a).zip(b) {
            *l += a * b;
        }
    }
    lanes.iter().sum()
}

/// Deterministic values in `[-1, 1)` (xorshift), for the kernels' tests.
#[cfg(test)]
fn test_values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Runs `f(first_row, rows)` over `out` (rows of `row_len` values) cut into blocks of
/// `rows_per_block` rows: on the kernels' worker pool (`pool.rs`: warm threads, and no wait for
/// one that has not started) when `parallel`, else in one call on the current thread.
pub fn for_row_blocks(
    out: &mut [f32],
    row_len: usize,
    rows_per_block: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let block_len = rows_per_block.max(1) * row_len;
    if !parallel || block_len == 0 || out.len() <= block_len {
        f(0, out);
        return;
    }
    // One lock per block: uncontended, it only hands each block's `&mut` to one thread.
    let blocks: Vec<Mutex<&mut [f32]>> = out.chunks_mut(block_len).map(Mutex::new).collect();
    // Claimed about eight at a time per thread: few claims, and a small tail.
    let claim = blocks.len().div_ceil(worker_threads() * 8).max(1);
    pool::pool().run(blocks.len().div_ceil(claim), |group| {
        for (b, block) in blocks.iter().enumerate().skip(group * claim).take(claim) {
            let mut rows = block.lock().unwrap_or_else(PoisonError::into_inner);
            f(b * rows_per_block.max(1), &mut rows);
        }
    });
}

/// Defines a kernel function that runs a copy compiled with AVX2 code generation when the CPU
/// has it (x86-64) and the baseline copy otherwise. Helpers called from the body must be
/// `#[inline(always)]` to be vectorised with it. Type parameters take one bound each.
macro_rules! simd_fn {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($gen:ident: $bound:path),*>)?
            ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name $(<$($gen: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$($gen: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2 $(<$($gen: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 support was checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
use simd_fn;
