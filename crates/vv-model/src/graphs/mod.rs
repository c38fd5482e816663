//! Batch-size buckets, and the model's CUDA graphs: every piece of an engine round (the text
//! windows, the diffusion sampling loop, the decoder step, the speech feedback with its EOS
//! test) is captured once per bucket of batch sizes and replayed for any batch that fits the
//! bucket, padded. A graph replays fixed device addresses, so each reads and writes persistent
//! buffers owned with it; the caches of a batch are reached through a KV table rewritten before
//! each replay, and padding rows point at a scratch cache of the graph's own. Capture plumbing:
//! `vv_kernels::graph`.

#[cfg(feature = "cuda")]
pub(crate) mod decoder;
#[cfg(feature = "cuda")]
pub(crate) mod feedback;
#[cfg(feature = "cuda")]
pub(crate) mod sampler;
#[cfg(feature = "cuda")]
pub(crate) mod text_window;

/// A graph's persistent KV table: room for `rows` rows over `streams` streams at any position
/// the kernels reach, its prefix filled with `entries` (each replay rewrites the prefix its
/// batch needs).
#[cfg(feature = "cuda")]
pub(crate) fn persistent_table(
    entries: &candle_core::Tensor,
    rows: usize,
    streams: usize,
) -> crate::error::Result<candle_core::Tensor> {
    use crate::kv_cache::KvCache;
    let len = vv_kernels::cuda::kv_table::max_table_len(rows, streams, KvCache::PAGE);
    let table = candle_core::Tensor::zeros(len, candle_core::DType::I64, entries.device())?;
    table.slice_set(entries, 0, 0)?;
    Ok(table)
}

/// Batch sizes that graphs are captured for; a batch replays the smallest bucket that holds it.
/// Below 32 each bucket doubles; above, steps grow by at most half, so padding costs a large
/// batch at most a third of its replay.
pub const BATCH_BUCKETS: [usize; 14] = [1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// The largest batch one forward takes: the largest bucket (larger rounds run in parts).
pub const MAX_BATCH: usize = BATCH_BUCKETS[BATCH_BUCKETS.len() - 1];

/// The bucket of a batch of `n`, or `None` when `n` is 0 or above [`MAX_BATCH`].
pub fn bucket(n: usize) -> Option<usize> {
    BATCH_BUCKETS.iter().copied().find(|&b| b >= n && n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_batch_gets_the_smallest_bucket_holding_it() {
        assert_eq!(bucket(0), None);
        assert_eq!(bucket(1), Some(1));
        assert_eq!(bucket(3), Some(4));
        assert_eq!(bucket(33), Some(48));
        assert_eq!(bucket(256), Some(256));
        assert_eq!(bucket(257), Some(384));
        assert_eq!(bucket(512), Some(512));
        assert_eq!(bucket(513), None);
        for n in 1..=MAX_BATCH {
            let b = bucket(n).unwrap();
            assert!(b >= n && b < 2 * n.max(1) + 1, "{n} -> {b}");
            if n > 32 {
                assert!(2 * b <= 3 * n, "{n} -> {b}");
            }
        }
    }
}
