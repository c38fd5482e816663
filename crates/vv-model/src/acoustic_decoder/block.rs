//! Block1D of the σ-VAE decoder on time-major rows `[B·T, C]` of a batch of streams: RMSNorm → depthwise causal conv →
//! ·gamma → residual, then RMSNorm → Linear(4C) → GELU(erf) → Linear → ·ffn_gamma → residual.
//!
//! The layer scales are folded into the mixer taps/bias and into `linear2` at load time.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use vv_kernels::cpu::{self as cpu, CpuSlice};

use super::conv::by_stream;
use super::conv::KERNEL;
use super::depthwise::mix;
use crate::linear::{linear, Epilogue, LinearWeight, Packing};

/// Expansion factor of the Block1D feed-forward network (hard-coded in the reference).
const FFN_EXPANSION: usize = 4;

/// Time steps per stream from which a stage with tall weights runs its feed-forward as one
/// fused kernel (`vv_kernels::cpu::tall_feed_forward`): the stages after the second (40 to
/// 3200 steps per frame). Fewer rows (the second stage's 8) fill one row block, which the
/// separate matmuls split by columns over the threads instead. Judged per stream, never per
/// batch, so a stream takes the same path alone and batched.
const FUSED_MIN_ROWS: usize = 32;

/// One Block1D with gamma/ffn_gamma folded into the preceding weights.
#[derive(Debug, Clone)]
pub(super) struct Block1D {
    norm: Tensor,
    /// `[K + 1, C]`: the taps, then the bias, both scaled by `gamma`.
    mixer_taps_bias: Tensor,
    ffn_norm: Tensor,
    /// `[4C, C]`.
    linear1: LinearWeight,
    linear1_bias: Tensor,
    /// `[C, 4C]`, rows scaled by `ffn_gamma`.
    linear2: LinearWeight,
    linear2_bias: Tensor,
    eps: f32,
    channels: usize,
}

/// `t ⊙ scale` (broadcast), computed in f32 for half-precision weights.
fn fold_scale(t: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let dtype = t.dtype();
    let compute = match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    };
    t.to_dtype(compute)?
        .broadcast_mul(&scale.to_dtype(compute)?)?
        .to_dtype(dtype)
}

/// RMSNorm over channels (last dim): the fused CUDA kernel (many short rows), candle's fused
/// op, or its composed form for the dtypes the fused op lacks (f64).
pub(super) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if vv_kernels::cuda::rms_norm::applies(x) {
        return vv_kernels::cuda::rms_norm::rms_norm(x, weight, eps);
    }
    match x.dtype() {
        DType::F64 => candle_nn::ops::rms_norm_slow(x, weight, eps),
        _ => candle_nn::ops::rms_norm(x, weight, eps),
    }
}

impl Block1D {
    /// Loads `stages.{i}.{j}` tensors for `channels` channels; the FFN weights are stored as
    /// `packing` says for `rows` time steps per stream and frame.
    pub(super) fn new(
        channels: usize,
        eps: f64,
        vb: VarBuilder,
        packing: Packing,
        rows: usize,
    ) -> Result<Self> {
        let hidden = FFN_EXPANSION * channels;
        let gamma = vb.get(channels, "gamma")?;
        let ffn_gamma = vb.get(channels, "ffn_gamma")?;
        let mixer = vb.pp("mixer").pp("conv").pp("conv").pp("conv");
        let taps = mixer
            .get((channels, 1, KERNEL), "weight")?
            .squeeze(1)?
            .t()?;
        let linear1 = vb.pp("ffn").pp("linear1");
        let linear2 = vb.pp("ffn").pp("linear2");
        let ffn_gamma_rows = ffn_gamma.unsqueeze(1)?;
        Ok(Self {
            norm: vb.pp("norm").get(channels, "weight")?,
            mixer_taps_bias: Tensor::cat(
                &[
                    fold_scale(&taps, &gamma)?,
                    fold_scale(&mixer.get(channels, "bias")?, &gamma)?.unsqueeze(0)?,
                ],
                0,
            )?,
            ffn_norm: vb.pp("ffn_norm").get(channels, "weight")?,
            linear1: packing.weight(
                linear1.get((hidden, channels), "weight")?.contiguous()?,
                rows,
            )?,
            linear1_bias: linear1.get(hidden, "bias")?,
            linear2: packing.weight(
                fold_scale(&linear2.get((channels, hidden), "weight")?, &ffn_gamma_rows)?,
                rows,
            )?,
            linear2_bias: fold_scale(&linear2.get(channels, "bias")?, &ffn_gamma)?,
            eps: eps as f32,
            channels,
        })
    }

    /// Shape of the mixer's streaming history: its last `K - 1` normed inputs.
    pub(super) fn history_shape(&self) -> (usize, usize) {
        (KERNEL - 1, self.channels)
    }

    /// `[B·T, C] -> [B·T, C]`, consuming and updating the streams' mixer histories
    /// (`[B, K - 1, C]`, normed inputs).
    pub(super) fn forward(&self, x: &Tensor, history: &mut Tensor) -> Result<Tensor> {
        let (_, len, _) = by_stream(x, history)?;
        let x = mix(history, x, &self.norm, self.eps, &self.mixer_taps_bias)?;
        if len >= FUSED_MIN_ROWS {
            if let Some(out) = self.fused_feed_forward(&x)? {
                return Ok(out);
            }
        }
        let normed = rms_norm(&x, &self.ffn_norm, self.eps)?;
        let up = Epilogue {
            bias: Some(&self.linear1_bias),
            gelu: true,
            residual: None,
            stream_rows: Some(len),
        };
        let hidden = linear(&normed, &self.linear1, up)?;
        let down = Epilogue {
            bias: Some(&self.linear2_bias),
            gelu: false,
            residual: Some(&x),
            stream_rows: Some(len),
        };
        linear(&hidden, &self.linear2, down)
    }

    /// `x + FFN(x)` in one fused CPU kernel where both FFN weights are tall and `x` is f32 on
    /// the CPU; `None` elsewhere (and where the kernel is missing).
    fn fused_feed_forward(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let (LinearWeight::Tall(up), LinearWeight::Tall(down)) = (&self.linear1, &self.linear2)
        else {
            return Ok(None);
        };
        let vectors = [&self.ffn_norm, &self.linear1_bias, &self.linear2_bias];
        if !cpu::eligible(&[x]) || !cpu::eligible(&vectors) {
            return Ok(None);
        }
        let (m, c) = x.dims2()?;
        let x = x.contiguous()?;
        // Weight vectors loaded from the checkpoint or folded at load time: contiguous.
        let (x, norm) = (CpuSlice::new(&x)?, CpuSlice::new(&self.ffn_norm)?);
        let up_bias = CpuSlice::new(&self.linear1_bias)?;
        let down_bias = CpuSlice::new(&self.linear2_bias)?;
        let f = cpu::FeedForward {
            norm: norm.get()?,
            eps: self.eps,
            up,
            up_bias: up_bias.get()?,
            down,
            down_bias: down_bias.get()?,
        };
        cpu::tall_feed_forward(x.get()?, m, &f)
            .map(|out| Tensor::from_vec(out, (m, c), &Device::Cpu))
            .transpose()
    }
}
