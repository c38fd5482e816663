//! Streaming state of the σ-VAE decoder: the minimal causal history of every convolution.

use candle_core::{Result, Tensor};

/// Carried context between [`super::AcousticDecoder::decode_step`] calls.
///
/// All tensors are time-major `[samples, channels]`. A fresh state holds zeros, which is exactly
/// the causal zero padding of a one-shot decode.
#[derive(Debug, Clone)]
pub struct DecoderState {
    /// Last `k - 1` inputs of the stem conv.
    pub(super) stem: Tensor,
    /// Per stage, per Block1D: last `k - 1` *normed* inputs of the depthwise mixer.
    pub(super) mixers: Vec<Vec<Tensor>>,
    /// Per transposed conv: the previous input sample `[1, C_in]`.
    pub(super) upsample: Vec<Tensor>,
    /// Last `k - 1` inputs of the head conv.
    pub(super) head: Tensor,
    /// Latent frames consumed so far.
    pub(super) frames: usize,
}

impl DecoderState {
    /// Number of latent frames decoded with this state.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

/// Prepends the carried history to `x` (`[T, C]`) and replaces the history with the last
/// `history.dim(0)` rows of the result, which is returned (`[H + T, C]`).
pub(super) fn extend_history(history: &mut Tensor, x: &Tensor) -> Result<Tensor> {
    let keep = history.dim(0)?;
    let window = Tensor::cat(&[&*history, x], 0)?;
    let len = window.dim(0)?;
    *history = window.narrow(0, len - keep, keep)?.copy()?;
    Ok(window)
}
