//! The decoder's batched single-frame step as CUDA graphs, one per batch-size bucket: ~250
//! kernel launches (26 Block1D, six upsamplers, stem and head) replayed as one for every stream
//! of a round. The graph reads persistent input latents and packed histories (`[bucket, len]`)
//! and writes the frames' audio and the next histories into persistent buffers; a replay copies
//! the batch's rows in (padding rows keep stale values, whose output is dropped), launches, and
//! copies the audio and the new states out, so states stay snapshots.

use candle_core::{CudaDevice, DType, Device, Tensor};
use vv_kernels::graph::{self, Graph};

use super::bucket;
use crate::acoustic_decoder::{state, AcousticDecoder};
use crate::error::Result;

/// The captured step of one bucket and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    /// `[bucket, vae_dim]` f32: one latent per stream.
    input: Tensor,
    /// `[bucket, len]`: the packed histories, read then overwritten by each replay.
    state: Tensor,
    /// `[bucket, channels, hop]` f32.
    out: Tensor,
}

/// The decoder's graphs, keyed by bucket.
pub(crate) type GraphCache = graph::GraphCache<usize, Captured>;

/// Decodes one frame of each of `B` streams (`latents` `[B, vae_dim]`, `packed` their states
/// `[B, len]`) through the graph of their bucket → (audio `[B, channels, hop]`, next states
/// `[B, len]`); `None` when graphs do not apply (not CUDA, a dtype without the fused kernels, a
/// batch above every bucket, or graphs switched off), so the caller decodes kernel by kernel.
pub(crate) fn decode(
    decoder: &AcousticDecoder,
    latents: &Tensor,
    packed: &Tensor,
) -> Result<Option<(Tensor, Tensor)>> {
    let Device::Cuda(cuda) = decoder.device() else {
        return Ok(None);
    };
    let batch = latents.dim(0)?;
    let Some(size) = bucket(batch) else {
        return Ok(None);
    };
    // Without the fused kernels the decoder broadcasts, which a graph cannot replay.
    if !vv_kernels::cuda::supported(decoder.dtype()) {
        return Ok(None);
    }
    let input = latents
        .to_device(decoder.device())?
        .to_dtype(DType::F32)?
        .contiguous()?;
    decoder.graphs().replay(
        size,
        || capture(decoder, cuda, size),
        |c| {
            c.graph.replay(&[(&c.input, &input), (&c.state, packed)])?;
            // Device copies queued behind the graph: the next replay overwrites the buffers.
            Ok((
                c.out.narrow(0, 0, batch)?.copy()?,
                c.state.narrow(0, 0, batch)?.copy()?,
            ))
        },
    )
}

/// Captures one frame's decode of `size` streams from the persistent inputs.
fn capture(decoder: &AcousticDecoder, cuda: &CudaDevice, size: usize) -> Result<Captured> {
    let device = decoder.device();
    let shapes = decoder.history_shapes();
    let input = Tensor::zeros((size, decoder.vae_dim()), DType::F32, device)?;
    let state = Tensor::zeros((size, state::packed_len(shapes)), decoder.dtype(), device)?;
    let out = Tensor::zeros(
        (size, decoder.channels(), decoder.hop_length()),
        DType::F32,
        device,
    )?;
    let graph = graph::capture(cuda, || {
        let x = input.to_dtype(decoder.dtype())?;
        let mut histories = state::unpack(&state, shapes)?;
        let audio = decoder.run(&x, size, &mut histories, None)?;
        out.slice_set(&audio, 0, 0)?;
        Ok::<_, crate::ModelError>(state.slice_set(&state::pack(&histories)?, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        input,
        state,
        out,
    })
}
