//! RMSNorm over the last dimension as one kernel with eight rows per block (a warp per row):
//! candle's kernel launches one 32-thread block per row, which leaves most of the GPU idle on
//! the decoder's hundreds of thousands of short rows (32 to 2048 channels) of a large batch.
//! Statistics and scaling in f32, result in the input dtype.

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// Rows (warps) per block.
const ROWS_PER_BLOCK: u32 = 8;

/// Warp `threadIdx.y` of block `blockIdx.x` normalises row `blockIdx.x · 8 + threadIdx.y`.
pub(super) const SOURCE: &str = r#"
#define RMS_NORM(NAME, T, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* x, const T* w, T* out, int rows, int cols,       \
                                int eps_bits) {                                           \
    long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y;                     \
    if (row >= rows) return;                                                              \
    const T* xr = x + row * cols;                                                         \
    float sq = 0.f;                                                                       \
    for (int c = threadIdx.x; c < cols; c += 32) {                                        \
        float v = LOAD(xr[c]);                                                            \
        sq += v * v;                                                                      \
    }                                                                                     \
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);           \
    float scale = rsqrtf(sq / cols + __int_as_float(eps_bits));                           \
    T* orow = out + row * cols;                                                           \
    for (int c = threadIdx.x; c < cols; c += 32)                                          \
        orow[c] = STORE(LOAD(xr[c]) * scale * LOAD(w[c]));                                \
}
RMS_NORM(rms_norm_f32, float, load_f32, store_f32)
RMS_NORM(rms_norm_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// Widest rows this kernel takes: wider ones do better with candle's block of 1024 threads
/// per row.
const MAX_COLS: usize = 1023;

/// Whether the kernel is the better choice for `x`: on CUDA, a dtype with kernels, rows of at
/// most [`MAX_COLS`] values (candle's kernel gives such rows one warp per block too).
pub fn applies(x: &Tensor) -> bool {
    x.device().is_cuda()
        && super::supported(x.dtype())
        && x.dims().last().is_some_and(|&c| c <= MAX_COLS)
}

/// `w ⊙ x / sqrt(mean(x²) + ε)` over the last dimension of `x` (`weight` `[cols]`), both of
/// one supported dtype on one CUDA device.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &RmsNorm { eps })
}

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "vv-rms-norm"
    }

    no_cpu_fwd!("rms-norm", _x _xl, _w _wl);

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_l: &Layout,
        w: &CudaStorage,
        w_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let cols = x_l.shape().dims().last().copied().unwrap_or(0);
        let elems = x_l.shape().elem_count();
        if cols == 0 || !x_l.is_contiguous() || w_l.shape().elem_count() != cols {
            bail!(
                "rms-norm kernel: x {:?}, weight {:?}",
                x_l.shape(),
                w_l.shape()
            );
        }
        let rows = elems / cols;
        let launch = Launch {
            name: "rms_norm",
            cfg: LaunchConfig {
                grid_dim: ((rows as u32).div_ceil(ROWS_PER_BLOCK), 1, 1),
                block_dim: (32, ROWS_PER_BLOCK, 1),
                shared_mem_bytes: 0,
            },
            inputs: &[
                (x, start_with_unit_stride(x_l, "x")?),
                (w, start_with_unit_stride(w_l, "weight")?),
            ],
            out_len: elems,
            table: None,
            ints: &[rows as i32, cols as i32, self.eps.to_bits() as i32],
        };
        // SAFETY: the arguments match the kernel's signature; sizes checked above.
        let out = unsafe { launch.run() }?;
        Ok((out, x_l.shape().clone()))
    }
}
