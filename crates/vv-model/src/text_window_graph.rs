//! A text window as a CUDA graph: the window's tokens through the lower LM, the text-type
//! embedding and the TTS LM's positive stream over the same rows (~300 kernel launches)
//! replayed as one, one graph per window length. Like the feedback graph, it reaches the KV
//! caches through persistent [`KvTable`]s rewritten before every replay, and it reads the
//! token ids from a persistent buffer.

use candle_core::{CudaDevice, Device, Tensor};

use crate::cuda_graph::{self, Graph};
use crate::cuda_kernels::kv_table::{self, KvTable};
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::language_model::TtsInput;
use crate::VibeVoiceModel;

/// The captured window and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    /// u32 `[n]`.
    ids: Tensor,
    /// The i64 KV tables of the lower LM's and the positive TTS stream's caches.
    lm_table: Tensor,
    tts_table: Tensor,
    /// `[1, hidden]`: the TTS LM's last row.
    out: Tensor,
}

/// The model's text-window graphs, keyed by the window's token count.
pub(crate) type GraphCache = cuda_graph::GraphCache<usize, Captured>;

/// Runs `ids` through the graph for their count and commits them to both caches, returning
/// the positive stream's last hidden row `[1, hidden]`; `None` when the graph does not apply
/// (not CUDA, the LMs apart or in different dtypes, a dtype without fused kernels, positions
/// the fused kernels do not reach, or graphs switched off).
pub(crate) fn forward(
    model: &VibeVoiceModel,
    ids: &[u32],
    kv_lm: &mut KvCache,
    kv_pos: &mut KvCache,
) -> Result<Option<Tensor>> {
    let (text, tts) = (model.text_lm.stack(), model.tts_lm.stack());
    let Device::Cuda(cuda) = tts.device() else {
        return Ok(None);
    };
    let n = ids.len();
    let usable = n > 0
        && text.device().same_device(tts.device())
        && text.dtype() == tts.dtype()
        && crate::cuda_kernels::supported(tts.dtype())
        && text.fits_cache(kv_lm)
        && text.fused_reach(kv_lm.len() + n)
        && tts.fits_cache(kv_pos)
        && tts.fused_reach(kv_pos.len() + n);
    if !usable {
        return Ok(None);
    }
    model.text_lm.check_ids(ids)?;
    kv_lm.reserve(n)?;
    kv_pos.reserve(n)?;
    let device = tts.device();
    let ids_t = Tensor::new(ids, device)?;
    let lm_table = kv_table::table(&[&mut *kv_lm], &[n], device)?;
    let tts_table = kv_table::table(&[&mut *kv_pos], &[n], device)?;
    let out = model.text_window_graphs.replay(
        n,
        || capture(model, cuda, &ids_t, &lm_table, &tts_table),
        |c| {
            let inputs = [
                (&c.ids, &ids_t),
                (&c.lm_table, &lm_table),
                (&c.tts_table, &tts_table),
            ];
            c.graph.replay(&inputs)?;
            // A device copy queued behind the graph: the next replay overwrites the buffer.
            Ok(c.out.copy()?)
        },
    )?;
    if out.is_some() {
        kv_lm.commit(n);
        kv_pos.commit(n);
    }
    Ok(out)
}

/// Captures the window reading persistent copies of the current window's ids and tables (so
/// the eager run before the capture computes exactly what the first replay rewrites).
fn capture(
    model: &VibeVoiceModel,
    cuda: &CudaDevice,
    ids: &Tensor,
    lm_table: &Tensor,
    tts_table: &Tensor,
) -> Result<Captured> {
    let (text, tts) = (model.text_lm.stack(), model.tts_lm.stack());
    let n = ids.dim(0)?;
    let (ids, lm_table, tts_table) = (ids.copy()?, lm_table.copy()?, tts_table.copy()?);
    let out = Tensor::zeros((1, tts.hidden_size()), tts.dtype(), tts.device())?;
    let graph = cuda_graph::capture(cuda, || {
        let x = model.text_lm.embed_ids(&ids)?;
        let lm = KvTable::persistent(lm_table.clone(), [n, 0], text.head_dim());
        let h_text = text.run_fused(&x, lm)?;
        let x = model.tts_lm.input_embeds(&TtsInput::text(&h_text))?;
        let kv = KvTable::persistent(tts_table.clone(), [n, 0], tts.head_dim());
        let h = tts.run_fused(&x, kv)?;
        Ok(out.slice_set(&h.narrow(0, n - 1, 1)?, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        ids,
        lm_table,
        tts_table,
        out,
    })
}
