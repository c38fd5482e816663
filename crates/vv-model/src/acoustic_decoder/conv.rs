//! The dense causal convolution (stem, head) and the causal transposed convolution (upsampling),
//! both expressed as matmuls on time-major activations of a batch of streams (`[B·T, C]`,
//! stream-major, each stream with its own history).

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use vv_kernels::cpu::{self as cpu, CpuSlice};

use super::state::extend_history;
use crate::linear::{linear, Epilogue, LinearWeight, Packing};

/// Kernel size of the stem, head and mixer convolutions (hard-coded in the reference).
pub(super) const KERNEL: usize = 7;

/// Output channels up to which a convolution (the head: one per audio channel) keeps f32
/// weights and, for f32 on the CPU, runs as dot products straight from each stream's window
/// (`vv_kernels::cpu::window_conv`) instead of a column matrix and a matmul.
const DIRECT_MAX_OUT: usize = 4;

/// Causal `Conv1d` (stride 1, zero left padding of `K - 1`), computed as im2col + matmul, or
/// (a few output channels, f32 on the CPU) as dot products straight from each stream's window.
#[derive(Debug, Clone)]
pub(super) struct CausalConv1d {
    /// Weight rearranged to `[C_out, K * C_in]` (tap-major columns).
    weight: LinearWeight,
    bias: Tensor,
    c_in: usize,
}

impl CausalConv1d {
    /// Loads `conv.conv.{weight,bias}` with PyTorch layout `[C_out, C_in, K]`; the weight is
    /// stored as `packing` says for `rows` time steps per stream and frame.
    pub(super) fn new(
        c_in: usize,
        c_out: usize,
        vb: VarBuilder,
        packing: Packing,
        rows: usize,
    ) -> Result<Self> {
        let vb = vb.pp("conv").pp("conv");
        let weight = vb
            .get((c_out, c_in, KERNEL), "weight")?
            .transpose(1, 2)?
            .reshape((c_out, KERNEL * c_in))?;
        let bias = vb.get(c_out, "bias")?;
        let packing = match c_out <= DIRECT_MAX_OUT {
            true => Packing::NONE,
            false => packing,
        };
        Ok(Self {
            weight: packing.weight(weight, rows)?,
            bias,
            c_in,
        })
    }

    /// Shape of the streaming history: the last `K - 1` inputs.
    pub(super) fn history_shape(&self) -> (usize, usize) {
        (KERNEL - 1, self.c_in)
    }

    /// `[B·T, C_in] -> [B·T, C_out]`, consuming and updating the `[B, K - 1, C_in]` histories.
    pub(super) fn forward(&self, x: &Tensor, history: &mut Tensor) -> Result<Tensor> {
        let (batch, len, c) = by_stream(x, history)?;
        if let LinearWeight::Dense(w) = &self.weight {
            if w.dim(0)? <= DIRECT_MAX_OUT && cpu::eligible(&[x, history, w, &self.bias]) {
                let window = extend_history(history, &x.reshape((batch, len, c))?)?;
                let (w, bias) = (w.contiguous()?, self.bias.contiguous()?);
                let (w_values, b_values) = (CpuSlice::new(&w)?, CpuSlice::new(&bias)?);
                let out = cpu::window_conv(
                    CpuSlice::new(&window)?.get()?,
                    batch,
                    c,
                    w_values.get()?,
                    b_values.get()?,
                );
                return Tensor::from_vec(out, (batch * len, w.dim(0)?), &Device::Cpu);
            }
        }
        let columns = window_columns(x, history, KERNEL)?;
        let e = Epilogue {
            bias: Some(&self.bias),
            stream_rows: Some(len),
            ..Epilogue::default()
        };
        linear(&columns, &self.weight, e)
    }
}

/// Causal `ConvTranspose1d` with kernel `2r` and stride `r`, right-trimmed by `r` samples, so
/// `T` inputs give exactly `T·r` outputs. Output sample `t·r + j` is
/// `x_t·W[:, :, j] + x_{t-1}·W[:, :, j + r] + b`: only the previous input sample is history,
/// and each half of the kernel is read once per call.
#[derive(Debug, Clone)]
pub(super) struct CausalConvTranspose1d {
    /// Taps `0..r` as `[r * C_out, C_in]`: contribution of the current input.
    current: LinearWeight,
    /// Taps `r..2r` as `[r * C_out, C_in]`: contribution of the previous input.
    carried: LinearWeight,
    /// Bias tiled over the `r` output phases, `[r * C_out]`.
    bias: Tensor,
    stride: usize,
    c_in: usize,
    c_out: usize,
}

impl CausalConvTranspose1d {
    /// Loads `convtr.convtr.{weight,bias}` with PyTorch layout `[C_in, C_out, 2r]`; the weight
    /// is stored as `packing` says for `rows` input time steps per stream and frame.
    pub(super) fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        vb: VarBuilder,
        packing: Packing,
        rows: usize,
    ) -> Result<Self> {
        let vb = vb.pp("convtr").pp("convtr");
        let weight = vb.get((c_in, c_out, 2 * stride), "weight")?;
        let half = |first: usize| {
            let taps = weight
                .narrow(2, first, stride)?
                .permute((2, 1, 0))?
                .reshape((stride * c_out, c_in))?;
            packing.weight(taps, rows)
        };
        let bias = vb
            .get(c_out, "bias")?
            .unsqueeze(0)?
            .broadcast_as((stride, c_out))?
            .reshape(stride * c_out)?;
        Ok(Self {
            current: half(0)?,
            carried: half(stride)?,
            bias,
            stride,
            c_in,
            c_out,
        })
    }

    /// Shape of the streaming history: the previous input sample.
    pub(super) fn history_shape(&self) -> (usize, usize) {
        (1, self.c_in)
    }

    /// `[B·T, C_in] -> [B·T·r, C_out]`, consuming and updating each stream's previous input
    /// sample (`[B, 1, C_in]`).
    pub(super) fn forward(&self, x: &Tensor, previous: &mut Tensor) -> Result<Tensor> {
        let (batch, len, _) = by_stream(x, previous)?;
        // Row t of each stream: its input before x_t (the carried one for t = 0).
        let earlier = window_columns(x, previous, 1)?;
        let own = Epilogue {
            bias: Some(&self.bias),
            stream_rows: Some(len),
            ..Epilogue::default()
        };
        let current = linear(x, &self.current, own)?;
        let carried = Epilogue {
            residual: Some(&current),
            stream_rows: Some(len),
            ..Epilogue::default()
        };
        linear(&earlier, &self.carried, carried)?.reshape((batch * len * self.stride, self.c_out))
    }
}

/// Each stream's window (its history `[B, H, C]`, then its rows of `x` `[B·T, C]`) as
/// `taps` consecutive rows per output row: `[B·T, taps·C]`, row `t` holding window rows
/// `t .. t + taps`; the history becomes each window's last `H` rows. One fused kernel on CUDA,
/// candle ops elsewhere.
fn window_columns(x: &Tensor, history: &mut Tensor, taps: usize) -> Result<Tensor> {
    let (batch, len, c) = by_stream(x, history)?;
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && vv_kernels::cuda::supported(x.dtype()) {
        let (columns, next) = vv_kernels::cuda::columns::causal_columns(history, x, taps)?;
        *history = next;
        return Ok(columns);
    }
    let window = extend_history(history, &x.reshape((batch, len, c))?)?;
    // Stream by stream: each stream's window is contiguous, so its taps are contiguous slices
    // and the concatenations plain copies (slicing the batch is strided, and slow on the CPU).
    let streams = (0..batch)
        .map(|b| {
            let w = window.get(b)?;
            let rows = (0..taps)
                .map(|k| w.narrow(0, k, len))
                .collect::<Result<Vec<_>>>()?;
            match rows.as_slice() {
                [one] => Ok(one.clone()),
                _ => Tensor::cat(&rows, 1),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    match streams.as_slice() {
        [one] => one.contiguous(),
        _ => Tensor::cat(&streams, 0),
    }
}

/// `(B, T, C)` of stream-major rows `x` (`[B·T, C]`) whose streams' histories are `history`
/// (`[B, H, C]`).
pub(super) fn by_stream(x: &Tensor, history: &Tensor) -> Result<(usize, usize, usize)> {
    let (rows, c) = x.dims2()?;
    let (batch, _, hist_c) = history.dims3()?;
    if batch == 0 || rows % batch != 0 || hist_c != c {
        candle_core::bail!(
            "decoder: {rows} rows of {c} channels for histories {:?}",
            history.dims()
        );
    }
    Ok((batch, rows / batch, c))
}
