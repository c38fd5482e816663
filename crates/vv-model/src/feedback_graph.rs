//! A frame's speech feedback as a CUDA graph: the connector, the speech-type embedding and the
//! TTS LM step of both CFG streams (one row each, ~250 kernel launches) replayed as one. On an
//! H100 this step is bound by candle's per-launch host overhead, not by GPU work
//! (docs/benchmarks.md).
//!
//! The graph reaches the streams' KV caches through a persistent [`KvTable`] (positions,
//! capacities, buffer addresses), rewritten before every replay, so one graph serves every
//! utterance at every position, whatever reallocations the caches went through. It reads a
//! persistent latent and writes a persistent `[2, hidden]` output (positive row first).

use candle_core::{CudaDevice, DType, Device, Tensor};

use crate::cuda_graph::{self, Graph};
use crate::cuda_kernels::kv_table::{self, KvTable};
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::language_model::TtsInput;
use crate::placement::Component;
use crate::VibeVoiceModel;

/// The captured step and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    /// `[1, latent]` f32.
    z: Tensor,
    /// The i64 KV table (see [`kv_table::table`]).
    table: Tensor,
    /// `[2, hidden]`: the positive stream's row, then the negative one's.
    out: Tensor,
}

/// The model's one feedback graph (two one-row streams, the TTS LM's dtype): no key needed.
pub(crate) type GraphCache = cuda_graph::GraphCache<(), Captured>;

/// Feeds `z` (`[1, latent]`) to both streams through the graph and commits one position to
/// each cache, returning `[2, hidden]` (positive row first); `None` when the graph does not
/// apply (not CUDA, the connector elsewhere, a dtype without fused kernels, positions the fused
/// kernels do not reach, or graphs switched off), so the caller runs the step kernel by kernel.
pub(crate) fn feed(
    model: &VibeVoiceModel,
    z: &Tensor,
    kv_pos: &mut KvCache,
    kv_neg: &mut KvCache,
) -> Result<Option<Tensor>> {
    let stack = model.tts_lm.stack();
    let Device::Cuda(cuda) = stack.device() else {
        return Ok(None);
    };
    let connector = model.place(Component::Connector);
    let usable = connector.device.same_device(stack.device())
        && crate::cuda_kernels::supported(stack.dtype())
        && z.dims() == [1, model.config().acoustic_vae_dim]
        && [&*kv_pos, &*kv_neg]
            .iter()
            .all(|c| stack.fits_cache(c) && stack.fused_reach(c.len() + 1));
    if !usable {
        return Ok(None);
    }
    let z = z
        .to_device(stack.device())?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let mut caches = [kv_pos, kv_neg];
    for cache in caches.iter_mut() {
        cache.reserve(1)?;
    }
    let table = kv_table::table(&caches, &[1, 1], stack.device())?;
    let out = model.feedback_graphs.replay(
        (),
        || capture(model, cuda, &table),
        |c| {
            c.graph.replay(&[(&c.z, &z), (&c.table, &table)])?;
            // A device copy queued behind the graph: the next replay overwrites the buffer.
            Ok(c.out.copy()?)
        },
    )?;
    if out.is_some() {
        for cache in caches {
            cache.commit(1);
        }
    }
    Ok(out)
}

/// Captures the step reading a persistent copy of `table` (the current step's, so that the
/// eager run before the capture writes only the positions the first replay rewrites).
fn capture(model: &VibeVoiceModel, cuda: &CudaDevice, table: &Tensor) -> Result<Captured> {
    let stack = model.tts_lm.stack();
    let device = stack.device();
    let z = Tensor::zeros((1, model.config().acoustic_vae_dim), DType::F32, device)?;
    let table = table.copy()?;
    let out = Tensor::zeros((2, stack.hidden_size()), stack.dtype(), device)?;
    let graph = cuda_graph::capture(cuda, || {
        let e = model.connector.forward(&z)?;
        let x = model.tts_lm.input_embeds(&TtsInput::speech(&e))?;
        let kv = KvTable::persistent(table.clone(), [1, 1], stack.head_dim());
        let h = stack.run_fused(&Tensor::cat(&[&x, &x], 0)?, kv)?;
        Ok(out.slice_set(&h, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        z,
        table,
        out,
    })
}
