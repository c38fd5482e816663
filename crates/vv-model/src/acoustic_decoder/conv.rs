//! The dense causal convolution (stem, head) and the causal transposed convolution (upsampling),
//! both expressed as one matmul on time-major `[T, C]` activations.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::state::extend_history;

/// Kernel size of the stem, head and mixer convolutions (hard-coded in the reference).
pub(super) const KERNEL: usize = 7;

/// Causal `Conv1d` (stride 1, zero left padding of `K - 1`), computed as im2col + matmul.
#[derive(Debug, Clone)]
pub(super) struct CausalConv1d {
    /// Weight rearranged to `[K * C_in, C_out]` (tap-major rows).
    weight: Tensor,
    bias: Tensor,
}

impl CausalConv1d {
    /// Loads `conv.conv.{weight,bias}` with PyTorch layout `[C_out, C_in, K]`.
    pub(super) fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("conv").pp("conv");
        let weight = vb
            .get((c_out, c_in, KERNEL), "weight")?
            .permute((2, 1, 0))?
            .reshape((KERNEL * c_in, c_out))?;
        let bias = vb.get(c_out, "bias")?;
        Ok(Self { weight, bias })
    }

    /// A zero history `[K - 1, C_in]` for streaming.
    pub(super) fn zero_history(&self) -> Result<Tensor> {
        let c_in = self.weight.dim(0)? / KERNEL;
        Tensor::zeros(
            (KERNEL - 1, c_in),
            self.weight.dtype(),
            self.weight.device(),
        )
    }

    /// `[T, C_in] -> [T, C_out]`, consuming and updating the `[K - 1, C_in]` history.
    pub(super) fn forward(&self, x: &Tensor, history: &mut Tensor) -> Result<Tensor> {
        let len = x.dim(0)?;
        let window = extend_history(history, x)?;
        let taps = (0..KERNEL)
            .map(|k| window.narrow(0, k, len))
            .collect::<Result<Vec<_>>>()?;
        let columns = Tensor::cat(&taps, 1)?;
        columns.matmul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// Causal `ConvTranspose1d` with kernel `2r` and stride `r`, right-trimmed by `r` samples, so
/// `T` inputs give exactly `T·r` outputs. Output sample `t·r + j` is
/// `x_t·W[:, :, j] + x_{t-1}·W[:, :, j + r] + b`: only the previous input sample is history.
#[derive(Debug, Clone)]
pub(super) struct CausalConvTranspose1d {
    /// Weight rearranged to `[C_in, 2r * C_out]` (tap-major columns).
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    c_out: usize,
}

impl CausalConvTranspose1d {
    /// Loads `convtr.convtr.{weight,bias}` with PyTorch layout `[C_in, C_out, 2r]`.
    pub(super) fn new(c_in: usize, c_out: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("convtr").pp("convtr");
        let kernel = 2 * stride;
        let weight = vb
            .get((c_in, c_out, kernel), "weight")?
            .transpose(1, 2)?
            .reshape((c_in, kernel * c_out))?;
        let bias = vb.get(c_out, "bias")?;
        Ok(Self {
            weight,
            bias,
            stride,
            c_out,
        })
    }

    /// A zero previous input `[1, C_in]` for streaming.
    pub(super) fn zero_history(&self) -> Result<Tensor> {
        Tensor::zeros(
            (1, self.weight.dim(0)?),
            self.weight.dtype(),
            self.weight.device(),
        )
    }

    /// `[T, C_in] -> [T·r, C_out]`, consuming and updating the previous input sample.
    pub(super) fn forward(&self, x: &Tensor, previous: &mut Tensor) -> Result<Tensor> {
        let len = x.dim(0)?;
        let block = self.stride * self.c_out;
        let window = extend_history(previous, x)?;
        let taps = window.matmul(&self.weight)?;
        let current = taps.narrow(0, 1, len)?.narrow(1, 0, block)?;
        let carried = taps.narrow(0, 0, len)?.narrow(1, block, block)?;
        (current + carried)?
            .reshape((len * self.stride, self.c_out))?
            .broadcast_add(&self.bias)
    }
}
