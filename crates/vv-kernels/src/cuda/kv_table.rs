//! The device table through which the fused RoPE/append and attention kernels reach a forward's
//! KV caches: for every packed row its stream and absolute position, for every stream its
//! capacity, and every layer's key and value buffer addresses of every stream. One small upload
//! per forward replaces per-layer pointer and length arguments, so the same launches serve any
//! number of streams at different positions (one batched attention over caches of different
//! lengths, nothing copied in proportion to a cache's length), and can be captured in a CUDA
//! graph and replayed for any utterances at any positions (the table is rewritten before each
//! replay).
//!
//! Layout (i64): `[0, R)` the stream of each row, `[R, 2R)` its position, `[2R, 2R + S)` each
//! stream's capacity, then for layer `l` and stream `s` the key address at
//! `2R + S + 2(l·S + s)` and the value address right after it.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::{bail, DType, Device, Result, Storage, Tensor};
use half::bf16;

use super::attention::MAX_KEYS;

/// A stream's KV cache as the kernels see it: a key and a value buffer
/// `[layers, kv_heads, capacity, head_dim]` each, contiguous, on the GPU.
pub trait KvBuffers {
    /// Positions already held: the first new row's position.
    fn position(&self) -> usize;
    /// Positions the buffers hold in all.
    fn capacity(&self) -> usize;
    /// Number of layers.
    fn num_layers(&self) -> usize;
    /// The key and value buffers of all layers.
    fn buffers(&self) -> Result<(&Tensor, &Tensor)>;
}

/// One stream of a forward: its cache and how many new rows it appends.
pub struct StreamRows<'a> {
    /// The cache, with room for `rows` positions after its current one.
    pub cache: &'a dyn KvBuffers,
    /// New rows (packed in stream order).
    pub rows: usize,
}

/// A forward's KV table on the device, with what its launches need on the host.
pub struct KvTable {
    table: Tensor,
    rows: usize,
    streams: usize,
    /// The most keys a query may see: the attention launch's shared-memory size.
    keys_bound: usize,
}

impl KvTable {
    /// The table of `streams` (in packed-row order), uploaded to `device`.
    pub fn upload(streams: &[StreamRows], device: &Device) -> Result<Self> {
        let entries = entries(streams)?;
        let len = entries.len();
        let keys_bound = streams
            .iter()
            .map(|s| s.cache.position() + s.rows)
            .max()
            .unwrap_or(0);
        Ok(Self {
            table: Tensor::from_vec(entries, len, device)?,
            rows: streams.iter().map(|s| s.rows).sum(),
            streams: streams.len(),
            keys_bound,
        })
    }

    /// A table kept in the persistent buffer `table` (rewritten with [`entries`] before each
    /// replay of a CUDA graph) for `rows` rows over `streams` streams and heads `head_dim`
    /// wide: any position the kernels accept.
    pub fn persistent(table: Tensor, rows: usize, streams: usize, head_dim: usize) -> Self {
        Self {
            table,
            rows,
            streams,
            keys_bound: MAX_KEYS - head_dim,
        }
    }

    pub(super) fn table(&self) -> &Tensor {
        &self.table
    }

    /// Packed rows in all.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Streams in all.
    pub fn streams(&self) -> usize {
        self.streams
    }

    pub(super) fn keys_bound(&self) -> usize {
        self.keys_bound
    }
}

/// Elements of the table of `rows` rows over `streams` streams of `layers` layers.
pub fn table_len(rows: usize, streams: usize, layers: usize) -> usize {
    2 * rows + streams + 2 * layers * streams
}

/// The table's entries for `streams` (each with room reserved for its rows, positions within
/// the attention kernel's limit, all with the same number of layers).
pub fn entries(streams: &[StreamRows]) -> Result<Vec<i64>> {
    let Some(first) = streams.first() else {
        bail!("kv table: no streams");
    };
    let layers = first.cache.num_layers();
    let rows: usize = streams.iter().map(|s| s.rows).sum();
    let mut table = vec![0i64; table_len(rows, streams.len(), layers)];
    let mut row = 0;
    for (s, stream) in streams.iter().enumerate() {
        let (cache, n) = (stream.cache, stream.rows);
        let end = cache.position() + n;
        if n == 0 || cache.num_layers() != layers || end > cache.capacity() || end > MAX_KEYS {
            bail!(
                "kv table: a stream of {n} rows at {} (capacity {}, {} layers) does not fit",
                cache.position(),
                cache.capacity(),
                cache.num_layers()
            );
        }
        for i in 0..n {
            table[row] = s as i64;
            table[rows + row] = (cache.position() + i) as i64;
            row += 1;
        }
        table[2 * rows + s] = cache.capacity() as i64;
    }
    let base = 2 * rows + streams.len();
    for (s, stream) in streams.iter().enumerate() {
        let (keys, values) = stream.cache.buffers()?;
        let (keys, values) = (address(keys)?, address(values)?);
        for layer in 0..layers {
            let at = base + 2 * (layer * streams.len() + s);
            table[at] = keys.0 + layer as i64 * keys.1;
            table[at + 1] = values.0 + layer as i64 * values.1;
        }
    }
    Ok(table)
}

/// The device address of the first element of `t` (contiguous `[layers, ...]`, f32 or bf16, on
/// CUDA) and the bytes from one layer to the next.
fn address(t: &Tensor) -> Result<(i64, i64)> {
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
    let size = t.dtype().size_in_bytes();
    let layer_bytes = (t.elem_count() / t.dim(0)?.max(1) * size) as i64;
    Ok((
        (base + (layout.start_offset() * size) as u64) as i64,
        layer_bytes,
    ))
}
