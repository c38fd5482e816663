//! Streaming state of the σ-VAE decoder: the minimal causal history of every convolution,
//! held one tensor per convolution (eager decoding) or packed into one buffer (what a CUDA
//! graph of the decoder step reads and writes whole).

use candle_core::{Result, Tensor};

/// Carried context between [`super::AcousticDecoder::decode_step`] calls.
///
/// Histories are time-major `[samples, channels]`, in the order the decode uses them (stem,
/// stage 0's mixers, first upsampler, stage 1's mixers, ..., head): the stem and head keep their
/// last `k - 1` inputs, each Block1D mixer its last `k - 1` *normed* inputs, each transposed
/// conv its previous input sample. A fresh state holds zeros, which is exactly the causal zero
/// padding of a one-shot decode. Decoding replaces tensors, never writes them in place, so a
/// cloned state is a snapshot.
#[derive(Debug, Clone)]
pub struct DecoderState {
    pub(super) history: History,
    /// Latent frames consumed so far.
    pub(super) frames: usize,
}

/// The histories, in decode order.
#[derive(Debug, Clone)]
pub(super) enum History {
    /// One tensor per convolution.
    Split(Vec<Tensor>),
    /// Every history flattened and concatenated into one 1-D buffer.
    Packed(Tensor),
}

impl DecoderState {
    /// Number of latent frames decoded with this state.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The histories one tensor each (views of the packed buffer when packed), for histories
    /// of `shapes`.
    pub(super) fn split(&self, shapes: &[(usize, usize)]) -> Result<Vec<Tensor>> {
        match &self.history {
            History::Split(tensors) => Ok(tensors.clone()),
            History::Packed(packed) => views(packed, shapes),
        }
    }

    /// The histories as one packed buffer (concatenated when split).
    #[cfg(any(feature = "cuda", test))]
    pub(super) fn packed(&self) -> Result<Tensor> {
        match &self.history {
            History::Packed(packed) => Ok(packed.clone()),
            History::Split(tensors) => pack(tensors),
        }
    }
}

/// Elements of a packed buffer holding histories of `shapes`.
pub(super) fn packed_len(shapes: &[(usize, usize)]) -> usize {
    shapes.iter().map(|(rows, cols)| rows * cols).sum()
}

/// Views of the `shapes` histories packed in `packed` (no copy).
pub(super) fn views(packed: &Tensor, shapes: &[(usize, usize)]) -> Result<Vec<Tensor>> {
    let mut offset = 0;
    shapes
        .iter()
        .map(|&(rows, cols)| {
            let view = packed.narrow(0, offset, rows * cols)?.reshape((rows, cols));
            offset += rows * cols;
            view
        })
        .collect()
}

/// The histories concatenated into one 1-D buffer.
#[cfg(any(feature = "cuda", test))]
pub(super) fn pack(histories: &[Tensor]) -> Result<Tensor> {
    let flat = histories
        .iter()
        .map(Tensor::flatten_all)
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&flat, 0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn packing_and_splitting_round_trip_in_decode_order() -> Result<()> {
        let shapes = [(6, 4), (1, 3), (6, 2)];
        let len = packed_len(&shapes);
        assert_eq!(len, 24 + 3 + 12);
        let packed = Tensor::arange(0f32, len as f32, &Device::Cpu)?;
        let state = DecoderState {
            history: History::Packed(packed.clone()),
            frames: 0,
        };
        let split = state.split(&shapes)?;
        let dims: Vec<_> = split.iter().map(|t| t.dims2()).collect::<Result<_>>()?;
        assert_eq!(dims, shapes);
        // The second history starts right after the first one's 24 elements.
        assert_eq!(split[1].to_vec2::<f32>()?, [[24f32, 25., 26.]]);
        let state = DecoderState {
            history: History::Split(split),
            frames: 0,
        };
        let repacked = state.packed()?;
        assert_eq!(repacked.to_vec1::<f32>()?, packed.to_vec1::<f32>()?);
        assert_eq!(repacked.dtype(), DType::F32);
        Ok(())
    }
}
