//! The speech feedback of a round's frames as CUDA graphs, one per batch-size bucket: the
//! connector, the speech-type embedding, the TTS-LM step of both CFG streams of every frame
//! (one row each) and the EOS classifier on the positive rows (~260 kernel launches) replayed as
//! one. On an H100 this step is bound by candle's per-launch host overhead, not by GPU work
//! (docs/benchmarks.md).
//!
//! The graph reaches the streams' KV caches through a persistent KV table of `2·bucket` streams
//! (the frames' positive streams, padding, their negative streams, padding), rewritten before
//! every replay, so one graph serves any utterances at any positions, whatever pages their
//! caches hold; padding streams write and read a scratch cache of the graph's own.

use candle_core::{CudaDevice, DType, Device, Tensor};
use vv_kernels::cuda::kv_table::{self, KvBuffers, KvTable, StreamRows};
use vv_kernels::graph::{self, Graph};

use super::{bucket, persistent_table};
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::language_model::TtsInput;
use crate::model::Feedback;
use crate::placement::Component;
use crate::VibeVoiceModel;

/// The captured step of one bucket and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    /// `[bucket, latent]` f32.
    z: Tensor,
    /// The i64 KV table (see [`kv_table::entries`]), long enough for any positions.
    table: Tensor,
    /// `[bucket, hidden]` each.
    h_pos: Tensor,
    h_neg: Tensor,
    /// `[bucket, 1]` f32.
    logits: Tensor,
    /// The cache padding streams use.
    scratch: KvCache,
}

/// The model's feedback graphs, keyed by bucket.
pub(crate) type GraphCache = graph::GraphCache<usize, Captured>;

/// Feeds `z` (`[B, latent]`, row `b` for `kv_pos[b]`/`kv_neg[b]`) to both streams of each frame
/// through the graph of their bucket and commits one position to each cache; `None` when the
/// graph does not apply (not CUDA, the connector or classifier elsewhere, a dtype without fused
/// kernels, positions the fused kernels do not reach, a batch above every bucket, or graphs
/// switched off), so the caller runs the step kernel by kernel.
pub(crate) fn feed(
    model: &VibeVoiceModel,
    z: &Tensor,
    kv_pos: &mut [&mut KvCache],
    kv_neg: &mut [&mut KvCache],
) -> Result<Option<Feedback>> {
    let stack = model.tts_lm.stack();
    let Device::Cuda(cuda) = stack.device() else {
        return Ok(None);
    };
    let batch = z.dim(0)?;
    let Some(size) = bucket(batch) else {
        return Ok(None);
    };
    let on_gpu = |c: Component| model.place(c).device.same_device(stack.device());
    let usable = on_gpu(Component::Connector)
        && on_gpu(Component::EosClassifier)
        && vv_kernels::cuda::supported(stack.dtype())
        && z.dims() == [batch, model.config().acoustic_vae_dim]
        && kv_pos.len() == batch
        && kv_neg.len() == batch
        && kv_pos
            .iter()
            .chain(kv_neg.iter())
            .all(|c| stack.fits_cache(c) && c.is_paged() && stack.fused_reach(c.len() + 1));
    if !usable {
        return Ok(None);
    }
    let z = z
        .to_device(stack.device())?
        .to_dtype(DType::F32)?
        .contiguous()?;
    for cache in kv_pos
        .iter_mut()
        .map(|c| &mut **c)
        .chain(kv_neg.iter_mut().map(|c| &mut **c))
    {
        cache.reserve(1)?;
    }
    let (pos, neg) = (&*kv_pos, &*kv_neg);
    let out = model.feedback_graphs.replay(
        size,
        || capture(model, cuda, size, pos, neg),
        |c| {
            let table = table(pos, neg, &c.scratch, size, stack.device())?;
            c.graph.replay(&[(&c.z, &z), (&c.table, &table)])?;
            // Device copies queued behind the graph: the next replay overwrites the buffers.
            Ok(Feedback {
                h_pos: c.h_pos.narrow(0, 0, batch)?.copy()?,
                h_neg: c.h_neg.narrow(0, 0, batch)?.copy()?,
                eos_logits: c.logits.narrow(0, 0, batch)?.copy()?,
            })
        },
    )?;
    if out.is_some() {
        for cache in kv_pos
            .iter_mut()
            .map(|c| &mut **c)
            .chain(kv_neg.iter_mut().map(|c| &mut **c))
        {
            cache.commit(1);
        }
    }
    Ok(out)
}

/// The table of `2·size` one-row streams: the positive caches, padding, the negative caches,
/// padding (padding reaches `scratch`).
fn table(
    kv_pos: &[&mut KvCache],
    kv_neg: &[&mut KvCache],
    scratch: &KvCache,
    size: usize,
    device: &Device,
) -> Result<Tensor> {
    let pad = size - kv_pos.len();
    let streams: Vec<StreamRows> = padded(kv_pos, scratch, pad)
        .chain(padded(kv_neg, scratch, pad))
        .map(|cache| StreamRows { cache, rows: 1 })
        .collect();
    let entries = kv_table::entries(&streams)?;
    let len = entries.len();
    Ok(Tensor::from_vec(entries, len, device)?)
}

/// `caches`, then `pad` times `scratch`.
fn padded<'a>(
    caches: &'a [&mut KvCache],
    scratch: &'a KvCache,
    pad: usize,
) -> impl Iterator<Item = &'a dyn KvBuffers> {
    caches
        .iter()
        .map(|c| &**c as &dyn KvBuffers)
        .chain(std::iter::repeat_n(scratch as &dyn KvBuffers, pad))
}

/// Captures the step for `size` frames, reading a persistent copy of the current batch's table
/// (so that the eager run before the capture writes only the positions the first replay
/// rewrites).
fn capture(
    model: &VibeVoiceModel,
    cuda: &CudaDevice,
    size: usize,
    kv_pos: &[&mut KvCache],
    kv_neg: &[&mut KvCache],
) -> Result<Captured> {
    let stack = model.tts_lm.stack();
    let device = stack.device();
    let scratch = stack.scratch_cache(1)?;
    let table = persistent_table(
        &table(kv_pos, kv_neg, &scratch, size, device)?,
        2 * size,
        2 * size,
    )?;
    let z = Tensor::zeros((size, model.config().acoustic_vae_dim), DType::F32, device)?;
    let h_pos = Tensor::zeros((size, stack.hidden_size()), stack.dtype(), device)?;
    let h_neg = h_pos.zeros_like()?;
    let logits = Tensor::zeros((size, 1), DType::F32, device)?;
    let graph = graph::capture(cuda, || {
        let e = model.connector.forward(&z)?;
        let x = model.tts_lm.input_embeds(&TtsInput::speech(&e))?;
        let kv = KvTable::persistent(
            table.clone(),
            2 * size,
            2 * size,
            KvCache::PAGE,
            stack.head_dim(),
        );
        let h = stack.run_fused(&Tensor::cat(&[&x, &x], 0)?, kv)?;
        let pos = h.narrow(0, 0, size)?;
        h_pos.slice_set(&pos, 0, 0)?;
        h_neg.slice_set(&h.narrow(0, size, size)?, 0, 0)?;
        let logit = model.eos.logit(&pos)?.to_dtype(DType::F32)?;
        Ok::<_, crate::ModelError>(logits.slice_set(&logit, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        z,
        table,
        h_pos,
        h_neg,
        logits,
        scratch,
    })
}
