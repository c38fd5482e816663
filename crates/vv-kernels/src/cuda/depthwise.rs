//! The decoder's depthwise causal convolution as one kernel, in place of the `2K + 1` candle
//! launches of its shifted multiply-add form (most of a Block1D's launches). It reads the
//! carried history and the new rows separately and also writes the next history, so the window
//! is never concatenated and the history never copied (two launches fewer per block).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// One thread per output value, over `batch` independent streams. Stream `b`'s window is its
/// history `hist[b]` (`kernel - 1` rows) then its `len` new rows `normed[b]`; output values
/// `[0, batch·len·C)` are the streams' convolutions `res + bias + Σ_k taps[k] · window[t + k]`
/// (stream-major), the rest each stream's window's last `kernel - 1` rows (its next history).
pub(super) const SOURCE: &str = r#"
#define DEPTHWISE(NAME, T, LOAD, STORE)                                                   \
extern "C" __global__ void NAME(const T* hist, const T* normed, const T* taps_bias,       \
        const T* res, T* out, int batch, int len, int channels, int kernel) {             \
    int h = kernel - 1;                                                                   \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
    long long conv = (long long)batch * len * channels;                                   \
    if (i >= conv + (long long)batch * h * channels) return;                              \
    if (i >= conv) {                                                                      \
        long long j = i - conv;                                                           \
        int b = j / ((long long)h * channels);                                            \
        int rest = j - (long long)b * h * channels;                                       \
        int w = len + rest / channels, ch = rest % channels;                              \
        out[i] = w < h ? hist[((long long)b * h + w) * channels + ch]                     \
                       : normed[((long long)b * len + w - h) * channels + ch];            \
        return;                                                                           \
    }                                                                                     \
    int b = i / ((long long)len * channels);                                              \
    int rest = i - (long long)b * len * channels;                                         \
    int t = rest / channels, ch = rest % channels;                                        \
    float acc = LOAD(res[i]) + LOAD(taps_bias[kernel * channels + ch]);                   \
    for (int k = 0; k < kernel; ++k) {                                                    \
        int w = t + k;                                                                    \
        float x = w < h ? LOAD(hist[((long long)b * h + w) * channels + ch])              \
                        : LOAD(normed[((long long)b * len + w - h) * channels + ch]);     \
        acc += LOAD(taps_bias[k * channels + ch]) * x;                                    \
    }                                                                                     \
    out[i] = STORE(acc);                                                                  \
}
DEPTHWISE(depthwise_causal_f32, float, load_f32, store_f32)
DEPTHWISE(depthwise_causal_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// `history` `[B, K - 1, C]`, `normed` `[B·T, C]` (stream-major), `taps_bias` `[K + 1, C]`
/// (K taps, then the bias), `residual` `[B·T, C]`, on one CUDA device in one supported dtype →
/// the convolutions `[B·T, C]` and the next histories `[B, K - 1, C]` (views of one output
/// buffer).
pub fn depthwise_causal(
    history: &Tensor,
    normed: &Tensor,
    taps_bias: &Tensor,
    residual: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (rows, channels) = normed.dims2()?;
    let (batch, h, _) = history.dims3()?;
    let op = DepthwiseCausal {
        history: history.contiguous()?,
    };
    let out = normed.contiguous()?.apply_op3_no_bwd(
        &taps_bias.contiguous()?,
        &residual.contiguous()?,
        &op,
    )?;
    let conv = rows * channels;
    Ok((
        out.narrow(0, 0, conv)?.reshape((rows, channels))?,
        out.narrow(0, conv, batch * h * channels)?
            .reshape((batch, h, channels))?,
    ))
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
        let (rows, channels) = res_l.shape().dims2()?;
        let kernel = taps_l.shape().dims2()?.0.saturating_sub(1);
        let (batch, h, hist_channels) = self.history.dims3()?;
        let (hist_storage, hist_l) = self.history.storage_and_layout();
        let Storage::Cuda(hist) = &*hist_storage else {
            bail!("depthwise conv kernel: the history is not on the GPU");
        };
        let contiguous = [normed_l, taps_l, res_l, hist_l]
            .iter()
            .all(|l| l.is_contiguous());
        let shapes_ok = kernel > 0
            && batch > 0
            && rows % batch == 0
            && normed_l.shape().dims2()? == (rows, channels)
            && (h, hist_channels) == (kernel - 1, channels)
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
        let len = rows / batch;
        let n = (rows + batch * h) * channels;
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
            ints: &[batch, len, channels, kernel].map(|x| x as i32),
        };
        // SAFETY: the arguments match the kernel's signature; sizes checked above.
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from(n)))
    }
}
