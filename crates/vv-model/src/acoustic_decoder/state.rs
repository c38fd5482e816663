//! Streaming state of the σ-VAE decoder: the minimal causal history of every convolution,
//! packed into one row of values per utterance, so that a batch of utterances decodes from one
//! `[B, len]` tensor (what a CUDA graph of the batched decoder step reads and writes whole) and
//! an utterance's state stays a row of the batch that produced it.

use candle_core::{Result, Tensor};

use crate::rows::BatchRow;

/// Carried context between [`super::AcousticDecoder::decode_step`] calls.
///
/// Histories are time-major `[samples, channels]`, in the order the decode uses them (stem,
/// stage 0's mixers, first upsampler, stage 1's mixers, ..., head): the stem and head keep their
/// last `k - 1` inputs, each Block1D mixer its last `k - 1` *normed* inputs, each transposed
/// conv its previous input sample. A fresh state holds zeros, which is exactly the causal zero
/// padding of a one-shot decode. Decoding replaces rows, never writes them in place, so a
/// cloned state is a snapshot.
#[derive(Debug, Clone)]
pub struct DecoderState {
    /// Every history flattened and concatenated: a row of a `[B, len]` batch tensor.
    pub(super) packed: BatchRow,
    /// Latent frames consumed so far.
    pub(super) frames: usize,
}

impl DecoderState {
    /// Number of latent frames decoded with this state.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

/// Elements of a packed row holding histories of `shapes`.
pub(crate) fn packed_len(shapes: &[(usize, usize)]) -> usize {
    shapes.iter().map(|(rows, cols)| rows * cols).sum()
}

/// The histories `[B, rows, cols]` of `shapes` held by the packed rows `packed` (`[B, len]`):
/// views for one row, copies otherwise.
pub(crate) fn unpack(packed: &Tensor, shapes: &[(usize, usize)]) -> Result<Vec<Tensor>> {
    let batch = packed.dim(0)?;
    let mut offset = 0;
    shapes
        .iter()
        .map(|&(rows, cols)| {
            let view = packed
                .narrow(1, offset, rows * cols)?
                .reshape((batch, rows, cols));
            offset += rows * cols;
            view
        })
        .collect()
}

/// The histories (`[B, rows, cols]` each) packed into `[B, len]` rows.
pub(crate) fn pack(histories: &[Tensor]) -> Result<Tensor> {
    let flat = histories
        .iter()
        .map(|h| h.flatten_from(1))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&flat, 1)
}

/// Prepends the carried history (`[B, H, C]`) to `x` (`[B, T, C]`) and replaces the history
/// with the last `H` rows of the result, which is returned (`[B, H + T, C]`).
pub(super) fn extend_history(history: &mut Tensor, x: &Tensor) -> Result<Tensor> {
    let keep = history.dim(1)?;
    let window = Tensor::cat(&[&*history, x], 1)?;
    let len = window.dim(1)?;
    *history = window.narrow(1, len - keep, keep)?.contiguous()?;
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn packing_and_unpacking_round_trip_in_decode_order_for_a_batch() -> Result<()> {
        let shapes = [(6, 4), (1, 3), (6, 2)];
        let len = packed_len(&shapes);
        assert_eq!(len, 24 + 3 + 12);
        let packed = Tensor::arange(0f32, (2 * len) as f32, &Device::Cpu)?.reshape((2, len))?;
        let split = unpack(&packed, &shapes)?;
        let dims: Vec<_> = split.iter().map(|t| t.dims3()).collect::<Result<_>>()?;
        assert_eq!(dims, [(2, 6, 4), (2, 1, 3), (2, 6, 2)]);
        // The second history of the second row starts right after its first one's 24 values.
        let l = len as f32;
        assert_eq!(split[1].to_vec3::<f32>()?[1], [[l + 24., l + 25., l + 26.]]);
        let repacked = pack(&split)?;
        assert_eq!(repacked.to_vec2::<f32>()?, packed.to_vec2::<f32>()?);
        Ok(())
    }
}
