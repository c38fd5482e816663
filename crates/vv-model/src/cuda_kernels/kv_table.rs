//! The device table through which the fused RoPE/append and attention kernels reach a forward's
//! KV caches: each stream's position and capacity, and every layer's key and value buffer
//! addresses. One small upload per forward replaces per-layer pointer and length arguments, so
//! the same launches can be captured in a CUDA graph and replayed at any position for any
//! utterance (the table is rewritten before each replay).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::{bail, DType, Device, Result, Storage, Tensor};
use half::bf16;

use super::attention::MAX_KEYS;
use crate::kv_cache::KvCache;

/// Table entries before the per-layer addresses: two positions, two capacities.
const HEADER: usize = 4;

/// A forward's KV table on the device, with what its launches need on the host.
pub(crate) struct KvTable {
    /// i64 `[4 + 4·layers]`: position₀, position₁, capacity₀, capacity₁, then per layer the
    /// addresses of key₀, value₀, key₁, value₁ (a single stream repeats its own).
    table: Tensor,
    /// New rows per stream (the second is 0 with one stream).
    rows: [usize; 2],
    /// The most keys a query may see: the attention launch's shared-memory size.
    keys_bound: usize,
}

impl KvTable {
    /// The table of one or two streams (`rows[s]` new rows into `caches[s]`, room reserved),
    /// uploaded to `device`.
    pub(crate) fn upload(caches: &[&mut KvCache], rows: &[usize], device: &Device) -> Result<Self> {
        let table = table(caches, rows, device)?;
        let keys_bound = caches.iter().zip(rows).map(|(c, n)| c.len() + n).max();
        Ok(Self {
            table,
            rows: [rows[0], rows.get(1).copied().unwrap_or(0)],
            keys_bound: keys_bound.unwrap_or(0),
        })
    }

    /// A table kept in the persistent buffer `table` (rewritten with [`table`] before each
    /// replay of a CUDA graph), for streams of `rows` rows and heads `head_dim` wide: any
    /// position the kernels accept.
    pub(crate) fn persistent(table: Tensor, rows: [usize; 2], head_dim: usize) -> Self {
        Self {
            table,
            rows,
            keys_bound: MAX_KEYS - head_dim,
        }
    }

    pub(super) fn table(&self) -> &Tensor {
        &self.table
    }

    pub(super) fn rows(&self) -> [usize; 2] {
        self.rows
    }

    pub(super) fn keys_bound(&self) -> usize {
        self.keys_bound
    }
}

/// Elements of the table of a stack of `layers` layers.
pub(crate) fn table_len(layers: usize) -> usize {
    HEADER + 4 * layers
}

/// The table for `rows[s]` new rows into `caches[s]` (one or two streams, room reserved,
/// positions within the attention kernel's limit) as an i64 tensor on `device`.
pub(crate) fn table(caches: &[&mut KvCache], rows: &[usize], device: &Device) -> Result<Tensor> {
    if rows.is_empty() || rows.len() > 2 || rows.len() != caches.len() {
        bail!(
            "kv table: {} streams over {} caches, one or two supported",
            rows.len(),
            caches.len()
        );
    }
    let pick = |s: usize| s.min(rows.len() - 1);
    let layers = caches[0].num_layers();
    let mut entries = Vec::with_capacity(table_len(layers));
    for s in 0..2 {
        let (cache, n) = (&caches[pick(s)], rows[pick(s)]);
        if cache.num_layers() != layers
            || !super::attention::fits(cache.len() + n, cache.head_dim())
        {
            bail!(
                "kv table: a stream of {n} rows at {} does not fit",
                cache.len()
            );
        }
        entries.push(cache.len() as i64);
    }
    for s in 0..2 {
        entries.push(caches[pick(s)].capacity() as i64);
    }
    for layer in 0..layers {
        for s in 0..2 {
            let (keys, values) = caches[pick(s)]
                .buffers(layer, rows[pick(s)])
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            entries.push(address(keys)?);
            entries.push(address(values)?);
        }
    }
    let len = entries.len();
    Tensor::from_vec(entries, len, device)
}

/// The device address of the first element of `t` (contiguous, f32 or bf16, on CUDA).
fn address(t: &Tensor) -> Result<i64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(s) = &*storage else {
        bail!("kv table: a cache is not on the GPU");
    };
    if !layout.is_contiguous() {
        bail!("kv table: cache buffers must be contiguous");
    }
    let stream = s.device().cuda_stream();
    let base = match t.dtype() {
        DType::F32 => s.as_cuda_slice::<f32>()?.device_ptr(&stream).0,
        DType::BF16 => s.as_cuda_slice::<bf16>()?.device_ptr(&stream).0,
        other => bail!("kv table: no kernels for {other:?} caches"),
    };
    Ok((base + (layout.start_offset() * t.dtype().size_in_bytes()) as u64) as i64)
}
