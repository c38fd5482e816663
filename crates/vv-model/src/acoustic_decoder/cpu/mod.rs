//! Fused f32 kernels for the decoder on the CPU, where candle's op-by-op execution (an
//! allocation and a thread barrier per elementwise op, single-threaded GEMV, slow small-m GEMM)
//! dominates the frame time. Other devices and dtypes use plain candle ops (see `super::ops`).

mod gelu;
mod matmul;
mod pointwise;

use candle_core::{bail, DType, Layout, Result, Storage, StorageRef, Tensor};

pub(super) use matmul::skinny_matmul;
pub(super) use pointwise::{depthwise_causal, epilogue, Epilogue};

/// Largest row count (time steps) sent to the skinny matmul; taller inputs go to candle's GEMM.
pub(super) const SKINNY_MAX_ROWS: usize = 16;

/// Whether every tensor is an f32 tensor on the CPU (the fused kernels' domain).
pub(super) fn eligible(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Read access to the contiguous f32 data of a CPU tensor.
pub(super) struct CpuSlice<'a> {
    storage: StorageRef<'a>,
    range: std::ops::Range<usize>,
}

impl<'a> CpuSlice<'a> {
    /// Borrows `t`, which must be contiguous (call `.contiguous()` first).
    pub(super) fn new(t: &'a Tensor) -> Result<Self> {
        let (storage, layout): (StorageRef<'a>, &Layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!(
                "decoder CPU kernel: tensor {:?} is not contiguous",
                t.dims()
            )
        };
        Ok(Self {
            storage,
            range: start..end,
        })
    }

    /// The tensor's values in row-major order.
    pub(super) fn get(&self) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(cpu) => Ok(&cpu.as_slice::<f32>()?[self.range.clone()]),
            _ => bail!("decoder CPU kernel: tensor is not on the CPU"),
        }
    }
}

/// Below this many values an elementwise kernel stays on one thread.
const MIN_PARALLEL_VALUES: usize = 1 << 17;

/// Runs `f(first_row, rows)` over `out` (rows of `row_len` values) split into contiguous row
/// blocks, one per thread when `out` is large enough to pay for the threads.
pub(super) fn for_row_blocks(
    out: &mut [f32],
    row_len: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let rows = out.len() / row_len.max(1);
    let threads = if out.len() >= MIN_PARALLEL_VALUES {
        candle_core::utils::get_num_threads().clamp(1, rows.max(1))
    } else {
        1
    };
    let rows_per_thread = rows.div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let mut blocks = out.chunks_mut(rows_per_thread * row_len.max(1)).enumerate();
        let own = blocks.next();
        for (i, block) in blocks {
            scope.spawn(move || f(i * rows_per_thread, block));
        }
        if let Some((_, block)) = own {
            f(0, block);
        }
    });
}

/// Defines a kernel function that runs a copy compiled with AVX2 code generation when the CPU
/// has it (x86-64) and the baseline copy otherwise. Helpers called from the body must be
/// `#[inline(always)]` to be vectorised with it.
macro_rules! simd_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
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
