//! The depthwise causal convolution as one CUDA kernel (compiled at run time with NVRTC), in
//! place of the `2K + 1` candle launches of the shifted multiply-add form: on the GPU a decoder
//! frame is bound by kernel launches, and this op is most of a Block1D's launches. It
//! accumulates in f32 for every storage type. Without NVRTC the candle form is used.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::bf16;

/// Module name under which the device caches the compiled kernels.
const MODULE: &str = "vv_depthwise_causal";

/// One thread per output value: `res + bias + Σ_k taps[k] · win[t + k]` over channel `ch`.
const SOURCE: &str = r#"
__device__ __forceinline__ float load_f32(float v) { return v; }
__device__ __forceinline__ float store_f32(float v) { return v; }
__device__ __forceinline__ float load_bf16(unsigned short v) {
    return __uint_as_float(((unsigned int)v) << 16);
}
__device__ __forceinline__ unsigned short store_bf16(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
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

/// The PTX of [`SOURCE`], compiled once per process; the error text if NVRTC failed.
fn ptx() -> std::result::Result<&'static str, &'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(String::as_str)
}

/// Whether the fused kernel can run: the dtype has a kernel and NVRTC compiled it (a failure
/// is logged once, and the caller keeps the candle form).
pub(super) fn supported(dtype: DType) -> bool {
    static WARNED: OnceLock<()> = OnceLock::new();
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return false;
    }
    match ptx() {
        Ok(_) => true,
        Err(e) => {
            WARNED.get_or_init(|| {
                tracing::warn!(
                    error = e,
                    "NVRTC could not compile the depthwise-conv kernel; the decoder uses \
                     candle's shifted multiply-adds on CUDA (slower)"
                )
            });
            false
        }
    }
}

/// `window` `[K - 1 + T, C]`, `taps_bias` `[K + 1, C]` (K taps, then the bias), `residual`
/// `[T, C]` → `[T, C]`; all contiguous, on one CUDA device, of one supported dtype.
pub(super) fn depthwise_causal(
    window: &Tensor,
    taps_bias: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    window.apply_op3_no_bwd(taps_bias, residual, &DepthwiseCausal)
}

struct DepthwiseCausal;

/// The contiguous part of a layout, or an error.
fn span(l: &Layout) -> Result<std::ops::Range<usize>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(a..b),
        None => bail!("depthwise conv kernel: input is not contiguous"),
    }
}

impl CustomOp3 for DepthwiseCausal {
    fn name(&self) -> &'static str {
        "vv-depthwise-causal"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the CUDA depthwise kernel has no CPU form; the CPU uses its own fused kernel")
    }

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
        if win_l.shape().dims2()? != (len + kernel - 1, channels) || kernel == 0 {
            bail!(
                "depthwise conv kernel: window {:?}, taps+bias {:?}, residual {:?}",
                win_l.shape(),
                taps_l.shape(),
                res_l.shape()
            );
        }
        let ptx = ptx().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let dev = win.device().clone();
        let n = len * channels;
        let cfg = LaunchConfig::for_num_elems(n as u32);
        let dims = [len as i32, channels as i32, kernel as i32];
        let (wr, tr, rr) = (span(win_l)?, span(taps_l)?, span(res_l)?);
        macro_rules! launch {
            ($t:ty, $name:literal) => {{
                let func = dev.get_or_load_custom_func($name, MODULE, ptx)?;
                let (w, t, r) = (
                    win.as_cuda_slice::<$t>()?.slice(wr),
                    taps.as_cuda_slice::<$t>()?.slice(tr),
                    res.as_cuda_slice::<$t>()?.slice(rr),
                );
                // SAFETY: every element is written by the kernel before it is read.
                let out = unsafe { dev.alloc::<$t>(n)? };
                let mut b = func.builder();
                b.arg(&w).arg(&t).arg(&r).arg(&out);
                b.arg(&dims[0]).arg(&dims[1]).arg(&dims[2]);
                // SAFETY: the argument list matches the kernel's signature and the sizes
                // were checked above.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match win.dtype() {
            DType::F32 => launch!(f32, "depthwise_causal_f32"),
            DType::BF16 => launch!(bf16, "depthwise_causal_bf16"),
            other => bail!("depthwise conv kernel: no kernel for {other:?}"),
        };
        Ok((out, Shape::from((len, channels))))
    }
}
