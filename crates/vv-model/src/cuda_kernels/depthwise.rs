//! The decoder's depthwise causal convolution as one kernel, in place of the `2K + 1` candle
//! launches of its shifted multiply-add form (most of a Block1D's launches). It reads the
//! carried history and the new rows separately and also writes the next history, so the window
//! is never concatenated and the history never copied (two launches fewer per block).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// One thread per output value. The window is `hist` (`kernel - 1` rows) then `normed` (`len`
/// rows); output rows `0..len` are `res + bias + Σ_k taps[k] · window[t + k]`, rows
/// `len..len + kernel - 1` the window's last `kernel - 1` rows (the next history).
pub(super) const SOURCE: &str = r#"
#define DEPTHWISE(NAME, T, LOAD, STORE)                                                   \
extern "C" __global__ void NAME(const T* hist, const T* normed, const T* taps_bias,       \
                                const T* res, T* out, int len, int channels, int kernel) {\
    int h = kernel - 1;                                                                   \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                        \
    if (i >= (len + h) * channels) return;                                                \
    int t = i / channels, ch = i - t * channels;                                          \
    if (t >= len) {                                                                       \
        int w = t;                                                                        \
        out[i] = w < h ? hist[w * channels + ch] : normed[(w - h) * channels + ch];       \
        return;                                                                           \
    }                                                                                     \
    float acc = LOAD(res[i]) + LOAD(taps_bias[kernel * channels + ch]);                   \
    for (int k = 0; k < kernel; ++k) {                                                    \
        int w = t + k;                                                                    \
        float x = w < h ? LOAD(hist[w * channels + ch]) : LOAD(normed[(w - h) * channels + ch]); \
        acc += LOAD(taps_bias[k * channels + ch]) * x;                                    \
    }                                                                                     \
    out[i] = STORE(acc);                                                                  \
}
DEPTHWISE(depthwise_causal_f32, float, load_f32, store_f32)
DEPTHWISE(depthwise_causal_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// `history` `[K - 1, C]`, `normed` `[T, C]`, `taps_bias` `[K + 1, C]` (K taps, then the
/// bias), `residual` `[T, C]`, on one CUDA device in one supported dtype → the convolution
/// `[T, C]` and the next history `[K - 1, C]` (views of one output buffer).
pub(crate) fn depthwise_causal(
    history: &Tensor,
    normed: &Tensor,
    taps_bias: &Tensor,
    residual: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let len = normed.dim(0)?;
    let op = DepthwiseCausal {
        history: history.contiguous()?,
    };
    let out = normed.contiguous()?.apply_op3_no_bwd(
        &taps_bias.contiguous()?,
        &residual.contiguous()?,
        &op,
    )?;
    let h = history.dim(0)?;
    Ok((out.narrow(0, 0, len)?, out.narrow(0, len, h)?))
}

struct DepthwiseCausal {
    history: Tensor,
}

impl CustomOp3 for DepthwiseCausal {
    fn name(&self) -> &'static str {
        "vv-depthwise-causal"
    }

    no_cpu_fwd!("depthwise", _a _al, _b _bl, _c _cl);

    fn cuda_fwd(
        &self,
        normed: &CudaStorage,
        normed_l: &Layout,
        taps: &CudaStorage,
        taps_l: &Layout,
        res: &CudaStorage,
        res_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (len, channels) = res_l.shape().dims2()?;
        let kernel = taps_l.shape().dims2()?.0.saturating_sub(1);
        let (hist_storage, hist_l) = self.history.storage_and_layout();
        let Storage::Cuda(hist) = &*hist_storage else {
            bail!("depthwise conv kernel: the history is not on the GPU");
        };
        let contiguous = [normed_l, taps_l, res_l, hist_l]
            .iter()
            .all(|l| l.is_contiguous());
        let shapes_ok = kernel > 0
            && normed_l.shape().dims2()? == (len, channels)
            && hist_l.shape().dims2()? == (kernel - 1, channels)
            && self.history.dtype() == normed.dtype();
        if !contiguous || !shapes_ok {
            bail!(
                "depthwise conv kernel: history {:?}, input {:?}, taps+bias {:?}, residual {:?}",
                hist_l.shape(),
                normed_l.shape(),
                taps_l.shape(),
                res_l.shape()
            );
        }
        let rows = len + kernel - 1;
        let n = rows * channels;
        let inputs = [
            (hist, start_with_unit_stride(hist_l, "history")?),
            (normed, start_with_unit_stride(normed_l, "input")?),
            (taps, start_with_unit_stride(taps_l, "taps")?),
            (res, start_with_unit_stride(res_l, "residual")?),
        ];
        let launch = Launch {
            name: "depthwise_causal",
            cfg: LaunchConfig::for_num_elems(n as u32),
            inputs: &inputs,
            out_len: n,
            table: None,
            ints: &[len as i32, channels as i32, kernel as i32],
        };
        // SAFETY: the arguments match the kernel's signature; sizes checked above.
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from((rows, channels))))
    }
}
