//! Block1D of the σ-VAE decoder: RMSNorm → depthwise causal conv → ·gamma → residual, then
//! RMSNorm → Linear(4C) → GELU(erf) → Linear → ·ffn_gamma → residual, on time-major `[T, C]`.
//!
//! The layer scales are folded into the mixer taps/bias and into `linear2` at load time.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::KERNEL;
use super::depthwise::{shifted_multiply_add, split_taps};
use super::state::extend_history;

/// Expansion factor of the Block1D feed-forward network (hard-coded in the reference).
const FFN_EXPANSION: usize = 4;

/// One Block1D with gamma/ffn_gamma folded into the preceding weights.
#[derive(Debug, Clone)]
pub(super) struct Block1D {
    norm: Tensor,
    mixer_taps: Vec<Tensor>,
    mixer_bias: Tensor,
    ffn_norm: Tensor,
    /// `[C, 4C]` matmul right-hand side.
    linear1: Tensor,
    linear1_bias: Tensor,
    /// `[4C, C]` matmul right-hand side, rows scaled by `ffn_gamma`.
    linear2: Tensor,
    linear2_bias: Tensor,
    eps: f32,
}

/// Multiplies the last dimension of `t` by `scale`, computing in f32 for half-precision weights.
fn scale_channels(t: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let dtype = t.dtype();
    let compute = match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    };
    t.to_dtype(compute)?
        .broadcast_mul(&scale.to_dtype(compute)?)?
        .to_dtype(dtype)
}

impl Block1D {
    /// Loads `stages.{i}.{j}` tensors for `channels` channels.
    pub(super) fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let hidden = FFN_EXPANSION * channels;
        let gamma = vb.get(channels, "gamma")?;
        let ffn_gamma = vb.get(channels, "ffn_gamma")?;
        let mixer = vb.pp("mixer").pp("conv").pp("conv").pp("conv");
        let mixer_taps = split_taps(&mixer.get((channels, 1, KERNEL), "weight")?)?
            .iter()
            .map(|tap| scale_channels(tap, &gamma))
            .collect::<Result<Vec<_>>>()?;
        let mixer_bias = scale_channels(&mixer.get(channels, "bias")?, &gamma)?;
        let ffn = vb.pp("ffn");
        let linear1 = ffn.pp("linear1").get((hidden, channels), "weight")?.t()?;
        let linear1_bias = ffn.pp("linear1").get(hidden, "bias")?;
        let linear2 = scale_channels(
            &ffn.pp("linear2").get((channels, hidden), "weight")?.t()?,
            &ffn_gamma,
        )?;
        let linear2_bias = scale_channels(&ffn.pp("linear2").get(channels, "bias")?, &ffn_gamma)?;
        Ok(Self {
            norm: vb.pp("norm").get(channels, "weight")?,
            mixer_taps,
            mixer_bias,
            ffn_norm: vb.pp("ffn_norm").get(channels, "weight")?,
            linear1,
            linear1_bias,
            linear2,
            linear2_bias,
            eps: eps as f32,
        })
    }

    /// A zero mixer history `[K - 1, C]` for streaming.
    pub(super) fn zero_history(&self) -> Result<Tensor> {
        Tensor::zeros(
            (KERNEL - 1, self.norm.dim(0)?),
            self.norm.dtype(),
            self.norm.device(),
        )
    }

    /// `[T, C] -> [T, C]`, consuming and updating the mixer's normed-input history.
    pub(super) fn forward(&self, x: &Tensor, history: &mut Tensor) -> Result<Tensor> {
        let normed = candle_nn::ops::rms_norm(x, &self.norm, self.eps)?;
        let window = extend_history(history, &normed)?;
        let x = shifted_multiply_add(
            &window,
            &self.mixer_taps,
            x.broadcast_add(&self.mixer_bias)?,
        )?;
        let normed = candle_nn::ops::rms_norm(&x, &self.ffn_norm, self.eps)?;
        let hidden = normed
            .matmul(&self.linear1)?
            .broadcast_add(&self.linear1_bias)?
            .gelu_erf()?;
        x + hidden
            .matmul(&self.linear2)?
            .broadcast_add(&self.linear2_bias)?
    }
}
