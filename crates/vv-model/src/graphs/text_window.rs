//! A round's text windows as CUDA graphs, one per bucket of window counts: every window's
//! tokens through the lower LM, the text-type embedding and the TTS LM's positive stream over
//! the same rows (~300 kernel launches) replayed as one. Each window takes [`TEXT_WINDOW`] rows
//! (a short last window is padded after its tokens, which causal attention keeps from its real
//! rows; padding positions are written past the committed length and never committed). Like
//! the feedback graphs, it reaches the KV caches through persistent KV tables rewritten before
//! every replay, padding windows a scratch cache of the graph's own, and it reads the token ids
//! and each window's last real row from persistent buffers.

use candle_core::{CudaDevice, Device, Tensor};
use vv_kernels::cuda::kv_table::{self, KvBuffers, KvTable, StreamRows};
use vv_kernels::graph::{self, Graph};

use super::{bucket, persistent_table};
use crate::error::Result;
use crate::generation::TEXT_WINDOW;
use crate::kv_cache::KvCache;
use crate::language_model::TtsInput;
use crate::model::TextWindow;
use crate::VibeVoiceModel;

/// The captured windows of one bucket and the buffers they read and write.
pub(crate) struct Captured {
    graph: Graph,
    /// u32 `[bucket·TEXT_WINDOW]`.
    ids: Tensor,
    /// The i64 KV tables of the lower LM's and the positive TTS streams' caches.
    lm_table: Tensor,
    tts_table: Tensor,
    /// u32 `[bucket]`: each window's last real row.
    last: Tensor,
    /// `[bucket, hidden]`: the TTS LM's row at each window's end.
    out: Tensor,
    /// The caches padding windows use.
    lm_scratch: KvCache,
    tts_scratch: KvCache,
}

/// The model's text-window graphs, keyed by bucket.
pub(crate) type GraphCache = graph::GraphCache<usize, Captured>;

/// Host inputs of one replay.
struct Inputs {
    ids: Tensor,
    last: Tensor,
}

/// Runs `windows` through the graph of their bucket and commits each window's tokens to its
/// caches, returning each window's last positive hidden row `[W, hidden]`; `None` when the
/// graph does not apply (not CUDA, the LMs apart or in different dtypes, a dtype without fused
/// kernels, a window longer than [`TEXT_WINDOW`], positions the fused kernels do not reach, a
/// batch above every bucket, or graphs switched off).
pub(crate) fn forward(
    model: &VibeVoiceModel,
    windows: &mut [TextWindow],
) -> Result<Option<Tensor>> {
    let (text, tts) = (model.text_lm.stack(), model.tts_lm.stack());
    let Device::Cuda(cuda) = tts.device() else {
        return Ok(None);
    };
    let count = windows.len();
    let Some(size) = bucket(count) else {
        return Ok(None);
    };
    let usable = text.device().same_device(tts.device())
        && text.dtype() == tts.dtype()
        && vv_kernels::cuda::supported(tts.dtype())
        && windows.iter().all(|w| {
            (1..=TEXT_WINDOW).contains(&w.ids.len())
                && text.fits_cache(w.kv_lm)
                && w.kv_lm.is_paged()
                && w.kv_pos.is_paged()
                && text.fused_reach(w.kv_lm.len() + TEXT_WINDOW)
                && tts.fits_cache(w.kv_pos)
                && tts.fused_reach(w.kv_pos.len() + TEXT_WINDOW)
        });
    if !usable {
        return Ok(None);
    }
    for w in windows.iter_mut() {
        model.text_lm.check_ids(w.ids)?;
        w.kv_lm.reserve(TEXT_WINDOW)?;
        w.kv_pos.reserve(TEXT_WINDOW)?;
    }
    let inputs = inputs(windows, size, tts.device())?;
    let out = model.text_window_graphs.replay(
        size,
        || capture(model, cuda, size, windows, &inputs),
        |c| {
            let (lm, pos) = tables(windows, &c.lm_scratch, &c.tts_scratch, size, tts.device())?;
            let buffers = [
                (&c.ids, &inputs.ids),
                (&c.lm_table, &lm),
                (&c.tts_table, &pos),
                (&c.last, &inputs.last),
            ];
            c.graph.replay(&buffers)?;
            // A device copy queued behind the graph: the next replay overwrites the buffer.
            Ok(c.out.narrow(0, 0, count)?.copy()?)
        },
    )?;
    if out.is_some() {
        for w in windows.iter_mut() {
            w.kv_lm.commit(w.ids.len());
            w.kv_pos.commit(w.ids.len());
        }
    }
    Ok(out)
}

/// The padded token ids and each window's last real row, on `device`.
fn inputs(windows: &[TextWindow], size: usize, device: &Device) -> Result<Inputs> {
    let mut ids = vec![0u32; size * TEXT_WINDOW];
    let mut last = vec![0u32; size];
    for (k, w) in windows.iter().enumerate() {
        ids[k * TEXT_WINDOW..k * TEXT_WINDOW + w.ids.len()].copy_from_slice(w.ids);
        last[k] = (k * TEXT_WINDOW + w.ids.len() - 1) as u32;
    }
    Ok(Inputs {
        ids: Tensor::from_vec(ids, size * TEXT_WINDOW, device)?,
        last: Tensor::from_vec(last, size, device)?,
    })
}

/// The table of `size` streams of [`TEXT_WINDOW`] rows: `caches`, then padding on `scratch`.
fn table<'a>(
    caches: impl Iterator<Item = &'a KvCache>,
    scratch: &'a KvCache,
    size: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut streams: Vec<&'a dyn KvBuffers> = caches.map(|c| c as &dyn KvBuffers).collect();
    let pad = size - streams.len();
    streams.extend(std::iter::repeat_n(scratch as &dyn KvBuffers, pad));
    let streams: Vec<StreamRows> = streams
        .into_iter()
        .map(|cache| StreamRows {
            cache,
            rows: TEXT_WINDOW,
        })
        .collect();
    let entries = kv_table::entries(&streams)?;
    let len = entries.len();
    Ok(Tensor::from_vec(entries, len, device)?)
}

/// The lower-LM and TTS tables of `windows`, padding on the scratch caches.
fn tables(
    windows: &[TextWindow],
    lm_scratch: &KvCache,
    tts_scratch: &KvCache,
    size: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    Ok((
        table(windows.iter().map(|w| &*w.kv_lm), lm_scratch, size, device)?,
        table(
            windows.iter().map(|w| &*w.kv_pos),
            tts_scratch,
            size,
            device,
        )?,
    ))
}

/// Captures `size` windows reading persistent copies of the current batch's inputs and tables
/// (so the eager run before the capture computes exactly what the first replay rewrites).
fn capture(
    model: &VibeVoiceModel,
    cuda: &CudaDevice,
    size: usize,
    windows: &[TextWindow],
    inputs: &Inputs,
) -> Result<Captured> {
    let (text, tts) = (model.text_lm.stack(), model.tts_lm.stack());
    let device = tts.device();
    let rows = size * TEXT_WINDOW;
    let lm_scratch = text.scratch_cache(TEXT_WINDOW)?;
    let tts_scratch = tts.scratch_cache(TEXT_WINDOW)?;
    let (lm_table, tts_table) = tables(windows, &lm_scratch, &tts_scratch, size, device)?;
    let lm_table = persistent_table(&lm_table, rows, size)?;
    let tts_table = persistent_table(&tts_table, rows, size)?;
    let (ids, last) = (inputs.ids.copy()?, inputs.last.copy()?);
    let out = Tensor::zeros((size, tts.hidden_size()), tts.dtype(), device)?;
    let graph = graph::capture(cuda, || {
        let x = model.text_lm.embed_ids(&ids)?;
        let lm = KvTable::persistent(lm_table.clone(), rows, size, KvCache::PAGE, text.head_dim());
        let h_text = text.run_fused(&x, lm)?;
        let x = model.tts_lm.input_embeds(&TtsInput::text(&h_text))?;
        let kv = KvTable::persistent(tts_table.clone(), rows, size, KvCache::PAGE, tts.head_dim());
        let h = tts.run_fused(&x, kv)?;
        Ok::<_, crate::ModelError>(out.slice_set(&h.index_select(&last, 0)?, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        ids,
        lm_table,
        tts_table,
        last,
        out,
        lm_scratch,
        tts_scratch,
    })
}
