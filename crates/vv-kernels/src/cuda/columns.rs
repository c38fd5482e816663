//! The decoder's causal convolutions' input rows as one kernel for a batch of streams: the
//! im2col columns of the dense causal convolutions (stem, head) and the shifted rows of the
//! transposed ones (upsamplers), read straight from each stream's carried history and its new
//! rows, with the next history written alongside. Candle's form concatenates the window,
//! slices it per tap and copies the strided slices into columns: several copies of the whole
//! batch's activations per convolution.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// One thread per output value. Stream `b`'s window is its history `hist[b]` (`h` rows) then
/// its `len` new rows `x[b]`; values `[0, batch·len·taps·C)` are the columns
/// `out[b, t, k·C + c] = window[b, t + k, c]` (stream-major), the rest each stream's next
/// history `window[b, len + j]` for `j < h`.
pub(super) const SOURCE: &str = r#"
#define COLUMNS(NAME, T)                                                                  \
extern "C" __global__ void NAME(const T* hist, const T* x, T* out, int batch, int len,    \
                                int channels, int h, int taps) {                          \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                       \
    long long width = (long long)taps * channels;                                         \
    long long cols = (long long)batch * len * width;                                      \
    if (i >= cols + (long long)batch * h * channels) return;                              \
    int b, w, c;                                                                          \
    if (i < cols) {                                                                       \
        b = i / ((long long)len * width);                                                 \
        long long rest = i - (long long)b * len * width;                                  \
        int t = rest / width;                                                             \
        int col = rest - (long long)t * width;                                            \
        w = t + col / channels;                                                           \
        c = col % channels;                                                               \
    } else {                                                                              \
        long long j = i - cols;                                                           \
        b = j / ((long long)h * channels);                                                \
        int rest = j - (long long)b * h * channels;                                       \
        w = len + rest / channels;                                                        \
        c = rest % channels;                                                              \
    }                                                                                     \
    out[i] = w < h ? hist[((long long)b * h + w) * channels + c]                          \
                   : x[((long long)b * len + w - h) * channels + c];                      \
}
COLUMNS(causal_columns_f32, float)
COLUMNS(causal_columns_bf16, unsigned short)
"#;

/// The window rows of a batch of streams: `history` `[B, H, C]`, `x` `[B·T, C]` (stream-major)
/// → columns `[B·T, taps·C]` (row `t` of stream `b` holds window rows `t .. t + taps`) and the
/// next histories `[B, H, C]` (views of one output buffer).
pub fn causal_columns(history: &Tensor, x: &Tensor, taps: usize) -> Result<(Tensor, Tensor)> {
    let (rows, channels) = x.dims2()?;
    let (batch, h, _) = history.dims3()?;
    let op = Columns {
        history: history.contiguous()?,
        taps,
    };
    let out = x.contiguous()?.apply_op1_no_bwd(&op)?;
    let cols = rows * taps * channels;
    Ok((
        out.narrow(0, 0, cols)?.reshape((rows, taps * channels))?,
        out.narrow(0, cols, batch * h * channels)?
            .reshape((batch, h, channels))?,
    ))
}

struct Columns {
    history: Tensor,
    taps: usize,
}

impl CustomOp1 for Columns {
    fn name(&self) -> &'static str {
        "vv-causal-columns"
    }

    no_cpu_fwd!("causal-columns", _x _xl);

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, channels) = x_l.shape().dims2()?;
        let (batch, h, hist_channels) = self.history.dims3()?;
        let (hist_storage, hist_l) = self.history.storage_and_layout();
        let Storage::Cuda(hist) = &*hist_storage else {
            bail!("causal columns kernel: the history is not on the GPU");
        };
        let taps = self.taps;
        let valid = x_l.is_contiguous()
            && hist_l.is_contiguous()
            && batch > 0
            && rows % batch == 0
            && hist_channels == channels
            && taps >= 1
            && taps <= h + 1
            && self.history.dtype() == x.dtype();
        if !valid {
            bail!(
                "causal columns kernel: history {:?}, x {:?}, {taps} taps",
                hist_l.shape(),
                x_l.shape()
            );
        }
        let n = (rows * taps + batch * h) * channels;
        let inputs = [
            (hist, start_with_unit_stride(hist_l, "history")?),
            (x, start_with_unit_stride(x_l, "x")?),
        ];
        let launch = Launch {
            name: "causal_columns",
            cfg: LaunchConfig::for_num_elems(n as u32),
            inputs: &inputs,
            out_len: n,
            table: None,
            ints: &[batch, rows / batch, channels, h, taps].map(|x| x as i32),
        };
        // SAFETY: the arguments match the kernel's signature; sizes checked above.
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from(n)))
    }
}
