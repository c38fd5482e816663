//! The decoder's depthwise causal convolution as one kernel, in place of the `2K + 1` candle
//! launches of its shifted multiply-add form (most of a Block1D's launches).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::bf16;

use super::{load_kernel, no_cpu_fwd, start_with_unit_stride, view};

/// One thread per output value: `res + bias + Σ_k taps[k] · win[t + k]` over channel `ch`.
pub(super) const SOURCE: &str = r#"
#define DEPTHWISE(NAME, T, LOAD, STORE)                                                   \
extern "C" __global__ void NAME(const T* win, const T* taps_bias, const T* res, T* out,  \
                                int len, int channels, int kernel) {                      \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                        \
    if (i >= len * channels) return;                                                      \
    int t = i / channels, ch = i - t * channels;                                          \
    float acc = LOAD(res[i]) + LOAD(taps_bias[kernel * channels + ch]);                   \
    for (int k = 0; k < kernel; ++k)                                                      \
        acc += LOAD(taps_bias[k * channels + ch]) * LOAD(win[(t + k) * channels + ch]);   \
    out[i] = STORE(acc);                                                                  \
}
DEPTHWISE(depthwise_causal_f32, float, load_f32, store_f32)
DEPTHWISE(depthwise_causal_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// `window` `[K - 1 + T, C]`, `taps_bias` `[K + 1, C]` (K taps, then the bias), `residual`
/// `[T, C]` → `[T, C]`; all contiguous, on one CUDA device, of one supported dtype.
pub(crate) fn depthwise_causal(
    window: &Tensor,
    taps_bias: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    window.apply_op3_no_bwd(taps_bias, residual, &DepthwiseCausal)
}

struct DepthwiseCausal;

impl CustomOp3 for DepthwiseCausal {
    fn name(&self) -> &'static str {
        "vv-depthwise-causal"
    }

    no_cpu_fwd!("depthwise");

    fn cuda_fwd(
        &self,
        win: &CudaStorage,
        win_l: &Layout,
        taps: &CudaStorage,
        taps_l: &Layout,
        res: &CudaStorage,
        res_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (len, channels) = res_l.shape().dims2()?;
        let kernel = taps_l.shape().dims2()?.0.saturating_sub(1);
        let contiguous = win_l.is_contiguous() && taps_l.is_contiguous() && res_l.is_contiguous();
        if !contiguous || kernel == 0 || win_l.shape().dims2()? != (len + kernel - 1, channels) {
            bail!(
                "depthwise conv kernel: window {:?}, taps+bias {:?}, residual {:?}",
                win_l.shape(),
                taps_l.shape(),
                res_l.shape()
            );
        }
        let dev = win.device().clone();
        let n = len * channels;
        let dims = [len as i32, channels as i32, kernel as i32];
        let starts = [
            start_with_unit_stride(win_l, "window")?,
            start_with_unit_stride(taps_l, "taps")?,
            start_with_unit_stride(res_l, "residual")?,
        ];
        macro_rules! launch {
            ($t:ty) => {{
                let (w, t, r) = (
                    view!(win, $t, starts[0]),
                    view!(taps, $t, starts[1]),
                    view!(res, $t, starts[2]),
                );
                let func = load_kernel!(dev, "depthwise_causal", win.dtype());
                let mut b = func.builder();
                // SAFETY: every element is written by the kernel before it is read.
                let out = unsafe { dev.alloc::<$t>(n)? };
                b.arg(&w).arg(&t).arg(&r).arg(&out);
                b.arg(&dims[0]).arg(&dims[1]).arg(&dims[2]);
                // SAFETY: the arguments match the kernel's signature; sizes checked above.
                unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match win.dtype() {
            DType::F32 => launch!(f32),
            DType::BF16 => launch!(bf16),
            other => bail!("depthwise conv kernel: no kernel for {other:?}"),
        };
        Ok((out, Shape::from((len, channels))))
    }
}
