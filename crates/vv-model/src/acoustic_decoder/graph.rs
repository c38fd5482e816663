//! The decoder's single-frame streaming step as a CUDA graph: ~250 kernel launches (26 Block1D,
//! six upsamplers, stem and head) replayed as one, since on an H100 the step is bound by
//! candle's per-launch host overhead, not by GPU work (docs/benchmarks.md).
//!
//! The graph reads a persistent input latent and a persistent packed history buffer, and writes
//! the frame's audio and the next histories back into persistent buffers. A replay copies the
//! utterance's packed state in, launches, and copies the audio and the new state out, so any
//! number of utterances share one graph and a state stays a snapshot.

use candle_core::{CudaDevice, DType, Device, Tensor};

use super::state::{pack, packed_len, views, History};
use super::{AcousticDecoder, DecoderState};
use crate::cuda_graph::{self, Graph};
use crate::error::Result;

/// The captured step and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    /// `[1, vae_dim, 1]` f32.
    input: Tensor,
    /// The packed histories, read then overwritten by each replay.
    state: Tensor,
    /// `[1, channels, hop]` f32.
    out: Tensor,
}

/// The decoder's one graph (a single frame, the decoder's dtype): no key needed.
pub(crate) type GraphCache = cuda_graph::GraphCache<(), Captured>;

/// Decodes one frame through the graph; `None` when it does not apply (not CUDA, not a single
/// frame, a dtype without the fused kernels, or graphs switched off), so the caller decodes
/// kernel by kernel.
pub(super) fn decode_step(
    decoder: &AcousticDecoder,
    latents: &Tensor,
    state: &mut DecoderState,
) -> Result<Option<Tensor>> {
    let Device::Cuda(cuda) = &decoder.device else {
        return Ok(None);
    };
    // Without the fused kernels the decoder broadcasts, which a graph cannot replay.
    if latents.dims() != [1, decoder.vae_dim, 1] || !crate::cuda_kernels::supported(decoder.dtype) {
        return Ok(None);
    }
    let input = latents
        .to_device(&decoder.device)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let packed = state.packed()?;
    let decoded = decoder.graphs().replay(
        (),
        || capture(decoder, cuda),
        |c| {
            c.graph.replay(&[(&c.input, &input), (&c.state, &packed)])?;
            // Device copies queued behind the graph: the next replay may overwrite the buffers.
            Ok((c.out.copy()?, c.state.copy()?))
        },
    )?;
    Ok(decoded.map(|(audio, next)| {
        state.history = History::Packed(next);
        state.frames += 1;
        audio
    }))
}

/// Captures one frame's decode from the persistent input and histories.
fn capture(decoder: &AcousticDecoder, cuda: &CudaDevice) -> Result<Captured> {
    let device = &decoder.device;
    let shapes = &decoder.history_shapes;
    let input = Tensor::zeros((1, decoder.vae_dim, 1), DType::F32, device)?;
    let state = Tensor::zeros(packed_len(shapes), decoder.dtype, device)?;
    let out = Tensor::zeros((1, decoder.channels, decoder.hop), DType::F32, device)?;
    let graph = cuda_graph::capture(cuda, || {
        let mut histories = views(&state, shapes)?;
        let audio = decoder.run(&input, &mut histories, None)?;
        out.slice_set(&audio, 0, 0)?;
        Ok(state.slice_set(&pack(&histories)?, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        input,
        state,
        out,
    })
}
