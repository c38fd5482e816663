//! The device table through which the fused RoPE/append and attention kernels reach a forward's
//! KV caches: for every packed row its stream and absolute position, for every stream where its
//! list of pages starts, and every page's key and value buffer addresses. A cache is a list of
//! fixed-size pages (`[layers, kv_heads, page, head_dim]` each), so caches grow without copying
//! and freed pages are reused whole. One small upload per forward replaces per-layer pointer
//! and length arguments, so the same launches serve any number of streams at different
//! positions (one batched attention over caches of different lengths, nothing copied in
//! proportion to a cache's length), and can be captured in a CUDA graph and replayed for any
//! utterances at any positions (the table is rewritten before each replay).
//!
//! Layout (i64): `[0, R)` the stream of each row, `[R, 2R)` its position, `[2R, 2R + S)` the
//! index of each stream's first page entry, then page entry `e`'s key address at
//! `2R + S + 2e` and its value address right after it. Position `p` of stream `s` lives in page
//! entry `first[s] + p / page`, at offset `p % page`.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::{bail, DType, Device, Result, Storage, Tensor};
use half::bf16;

use super::attention::MAX_KEYS;

/// A stream's KV cache as the kernels see it: pages of `page_positions()` positions, a key and
/// a value buffer `[layers, kv_heads, page_positions, head_dim]` each, contiguous, on the GPU.
pub trait KvBuffers {
    /// Positions already held: the first new row's position.
    fn position(&self) -> usize;
    /// Positions the stream may write below (its pages' end, less pages it shares).
    fn capacity(&self) -> usize;
    /// Number of layers.
    fn num_layers(&self) -> usize;
    /// Positions per page.
    fn page_positions(&self) -> usize;
    /// The key and value buffers of page `i` (positions `i·page..(i + 1)·page`), if it exists.
    fn page(&self, i: usize) -> Option<(&Tensor, &Tensor)>;
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
    /// Positions per page of every stream.
    page: usize,
    /// The most keys a query may see: the attention launch's shared-memory size.
    keys_bound: usize,
}

impl KvTable {
    /// The table of `streams` (in packed-row order), uploaded to `device`.
    pub fn upload(streams: &[StreamRows], device: &Device) -> Result<Self> {
        let entries = entries(streams)?;
        // `entries` checked that there are streams and that they share one page size.
        let page = streams.first().map_or(0, |s| s.cache.page_positions());
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
            page,
            keys_bound,
        })
    }

    /// A table kept in the persistent buffer `table` (at least [`max_table_len`] long; its
    /// prefix rewritten with [`entries`] before each replay of a CUDA graph) for `rows` rows
    /// over `streams` streams of pages of `page` positions and heads `head_dim` wide: any
    /// position the kernels accept.
    pub fn persistent(
        table: Tensor,
        rows: usize,
        streams: usize,
        page: usize,
        head_dim: usize,
    ) -> Self {
        Self {
            table,
            rows,
            streams,
            page,
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

    /// What a launch over layer `layer` of this table passes its kernel.
    pub(super) fn args(&self, layer: usize) -> TableArgs {
        TableArgs {
            layer,
            rows: self.rows,
            streams: self.streams,
            page: self.page,
        }
    }

    pub(super) fn keys_bound(&self) -> usize {
        self.keys_bound
    }
}

/// The table's part of a kernel launch: the layer read or written, the packed rows, the
/// streams and the positions per page.
#[derive(Debug, Clone, Copy)]
pub(super) struct TableArgs {
    pub layer: usize,
    pub rows: usize,
    pub streams: usize,
    pub page: usize,
}

impl TableArgs {
    /// The kernels' integer arguments: layer, rows, streams, `heads`, `kv_heads`, `width` (the
    /// head width, or half of it), page.
    pub(super) fn ints(&self, heads: usize, kv_heads: usize, width: usize) -> [i32; 7] {
        [
            self.layer,
            self.rows,
            self.streams,
            heads,
            kv_heads,
            width,
            self.page,
        ]
        .map(|x| x as i32)
    }
}

/// Elements of the table's fixed part (rows and streams, before the page entries).
pub(super) fn header_len(rows: usize, streams: usize) -> usize {
    2 * rows + streams
}

/// The longest table of `rows` rows over `streams` streams of pages of `page` positions: every
/// stream at the kernels' largest position (the size of a CUDA graph's persistent table).
pub fn max_table_len(rows: usize, streams: usize, page: usize) -> usize {
    header_len(rows, streams) + 2 * streams * MAX_KEYS.div_ceil(page.max(1))
}

/// The table's entries for `streams` (each with room reserved for its rows, positions within
/// the attention kernel's limit, all with the same number of layers and page size).
pub fn entries(streams: &[StreamRows]) -> Result<Vec<i64>> {
    let Some(first) = streams.first() else {
        bail!("kv table: no streams");
    };
    let (layers, page) = (first.cache.num_layers(), first.cache.page_positions());
    let rows: usize = streams.iter().map(|s| s.rows).sum();
    let base = header_len(rows, streams.len());
    let mut table = vec![0i64; base];
    let mut row = 0;
    for (s, stream) in streams.iter().enumerate() {
        let (cache, n) = (stream.cache, stream.rows);
        let end = cache.position() + n;
        let fits = n > 0
            && cache.num_layers() == layers
            && cache.page_positions() == page
            && page > 0
            && end <= cache.capacity()
            && end <= MAX_KEYS;
        if !fits {
            bail!(
                "kv table: a stream of {n} rows at {} (capacity {}, {} layers, pages of {}) does \
                 not fit",
                cache.position(),
                cache.capacity(),
                cache.num_layers(),
                cache.page_positions()
            );
        }
        for i in 0..n {
            table[row] = s as i64;
            table[rows + row] = (cache.position() + i) as i64;
            row += 1;
        }
        table[2 * rows + s] = ((table.len() - base) / 2) as i64;
        for i in 0..end.div_ceil(page) {
            let Some((keys, values)) = cache.page(i) else {
                bail!("kv table: no page {i} of {page} positions below position {end}");
            };
            let (kd, vd) = (keys.dims(), values.dims());
            if kd != vd || kd.len() != 4 || kd[0] != layers || kd[2] != page {
                bail!("kv table: pages {kd:?} / {vd:?}, expected [{layers}, _, {page}, _]");
            }
            table.push(address(keys)?);
            table.push(address(values)?);
        }
    }
    Ok(table)
}

/// The device address of the first element of `t` (contiguous, f32 or bf16, on CUDA).
fn address(t: &Tensor) -> Result<i64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(s) = &*storage else {
        bail!("kv table: a cache is not on the GPU");
    };
    if !layout.is_contiguous() {
        bail!("kv table: cache pages must be contiguous");
    }
    let stream = s.device().cuda_stream();
    let base = match t.dtype() {
        DType::F32 => s.as_cuda_slice::<f32>()?.device_ptr(&stream).0,
        DType::BF16 => s.as_cuda_slice::<bf16>()?.device_ptr(&stream).0,
        other => bail!("kv table: no kernels for {other:?} caches"),
    };
    Ok((base + (layout.start_offset() * t.dtype().size_in_bytes()) as u64) as i64)
}
