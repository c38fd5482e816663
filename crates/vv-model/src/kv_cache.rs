//! Per-stream KV cache of a Qwen2 layer stack, filled in place, in one of two layouts:
//!
//! - **Contiguous** (CPU, Metal): all layers' keys in one buffer `[layers, num_kv_heads,
//!   capacity, head_dim]` (keys stored after RoPE, HF `DynamicCache` order without the batch
//!   dimension), the values in another, so candle's attention reads each layer as a view.
//!   Appending writes into the spare capacity; the buffers are reallocated (one copy) only when a
//!   block does not fit, growing by whole chunks of [`KvCache::CHUNK`].
//! - **Paged** (CUDA with the fused kernels): fixed-size pages of [`KvCache::PAGE`] positions,
//!   each a key and a value buffer `[layers, num_kv_heads, PAGE, head_dim]`, which the kernels
//!   reach through a KV table. Growing adds a page and copies nothing; every page of a stack has
//!   the same size, so a freed page is reused whole by the next one (no fragmentation of the
//!   device's memory pool as thousands of caches grow); and clones share their full pages (every
//!   utterance of a voice shares the voice prompt's pages), copying only a partly filled last
//!   page when they first write.
//!
//! The cache length is the stream's next absolute position.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// Keys and values of every layer of one stream (one utterance's lower LM, positive or
/// negative TTS LM).
///
/// `clone()` is cheap and copy-on-write: the clone shares the filled positions and has no
/// writable room, so its first append copies (the whole buffers when contiguous, the partly
/// filled last page when paged), and the original only ever writes past the positions the
/// clone can see. [`KvCache::try_clone`] copies eagerly.
#[derive(Debug)]
pub struct KvCache {
    storage: Storage,
    num_layers: usize,
    num_kv_heads: usize,
    head_dim: usize,
    /// Positions held (committed); also the next position of the stream.
    len: usize,
    dtype: DType,
    device: Device,
}

#[derive(Debug)]
enum Storage {
    Contiguous {
        /// `[layers, num_kv_heads, capacity, head_dim]`; `None` until the first reservation.
        keys: Option<Tensor>,
        /// Same layout as `keys`.
        values: Option<Tensor>,
        /// Positions the buffers can hold without reallocating.
        capacity: usize,
    },
    Paged {
        /// In position order; page `i` holds positions `i·PAGE..(i + 1)·PAGE`.
        pages: Vec<Page>,
        /// The leading pages shared with another cache (read-only here).
        shared: usize,
    },
}

/// One page: `[layers, num_kv_heads, PAGE, head_dim]` keys and values.
#[derive(Debug, Clone)]
struct Page {
    keys: Tensor,
    values: Tensor,
}

impl Page {
    fn copy(&self) -> Result<Self> {
        Ok(Self {
            keys: self.keys.copy()?,
            values: self.values.copy()?,
        })
    }
}

impl KvCache {
    /// Growth step of contiguous buffers, in positions.
    pub const CHUNK: usize = 256;
    /// Positions per page of a paged cache.
    pub const PAGE: usize = 128;

    /// An empty cache; no memory is allocated before the first token. Paged where the fused
    /// CUDA kernels read it (a CUDA device and a dtype they support), contiguous elsewhere.
    pub fn new(
        num_layers: usize,
        num_kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Self {
        let paged = Self::kernels_read(dtype, device);
        Self::with_layout(num_layers, num_kv_heads, head_dim, dtype, device, paged)
    }

    #[cfg(feature = "cuda")]
    fn kernels_read(dtype: DType, device: &Device) -> bool {
        device.is_cuda() && vv_kernels::cuda::supported(dtype)
    }

    #[cfg(not(feature = "cuda"))]
    fn kernels_read(_dtype: DType, _device: &Device) -> bool {
        false
    }

    fn with_layout(
        num_layers: usize,
        num_kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
        paged: bool,
    ) -> Self {
        let storage = if paged {
            Storage::Paged {
                pages: Vec::new(),
                shared: 0,
            }
        } else {
            Storage::Contiguous {
                keys: None,
                values: None,
                capacity: 0,
            }
        };
        Self {
            storage,
            num_layers,
            num_kv_heads,
            head_dim,
            len: 0,
            dtype,
            device: device.clone(),
        }
    }

    /// An empty cache of the same shape and layout.
    fn empty_like(&self, dtype: DType, device: &Device) -> Self {
        Self::new(
            self.num_layers,
            self.num_kv_heads,
            self.head_dim,
            dtype,
            device,
        )
    }
    /// Builds a cache from per-layer keys and values (e.g. a voice preset), each
    /// `[1, kv, T, hd]` or `[kv, T, hd]`, all of the same shape, dtype and device.
    /// The data is copied: later appends never touch the given tensors.
    pub fn from_layers(keys: Vec<Tensor>, values: Vec<Tensor>) -> Result<Self> {
        let invalid = |reason: String| ModelError::InvalidInput(format!("kv cache: {reason}"));
        if keys.is_empty() || keys.len() != values.len() {
            return Err(invalid(format!(
                "need the same non-zero number of key and value layers, got {} and {}",
                keys.len(),
                values.len()
            )));
        }
        let keys = keys
            .iter()
            .map(drop_batch_dim)
            .collect::<Result<Vec<_>>>()?;
        let values = values
            .iter()
            .map(drop_batch_dim)
            .collect::<Result<Vec<_>>>()?;
        let first = &keys[0];
        let (num_kv_heads, len, head_dim) = first.dims3()?;
        for t in keys.iter().chain(values.iter()) {
            if t.dims() != first.dims() || t.dtype() != first.dtype() {
                return Err(invalid(format!(
                    "layers disagree: {:?} {:?} vs {:?} {:?}",
                    t.dims(),
                    t.dtype(),
                    first.dims(),
                    first.dtype()
                )));
            }
            if !t.device().same_device(first.device()) {
                return Err(invalid("layers live on different devices".into()));
            }
        }
        let mut cache = Self::new(
            keys.len(),
            num_kv_heads,
            head_dim,
            first.dtype(),
            first.device(),
        );
        let stack =
            |layers: &[Tensor]| -> Result<Tensor> { Ok(Tensor::stack(layers, 0)?.contiguous()?) };
        if len > 0 {
            cache.fill_from(&stack(&keys)?, &stack(&values)?)?;
        }
        Ok(cache)
    }

    /// A deep copy: appending to either cache leaves the other unchanged. One copy of each
    /// buffer (spare capacity included) or page.
    pub fn try_clone(&self) -> Result<Self> {
        let storage = match &self.storage {
            Storage::Contiguous {
                keys,
                values,
                capacity,
            } => {
                let copy = |t: &Option<Tensor>| t.as_ref().map(Tensor::copy).transpose();
                Storage::Contiguous {
                    keys: copy(keys)?,
                    values: copy(values)?,
                    capacity: *capacity,
                }
            }
            Storage::Paged { pages, .. } => Storage::Paged {
                pages: pages.iter().map(Page::copy).collect::<Result<_>>()?,
                shared: 0,
            },
        };
        Ok(Self {
            storage,
            device: self.device.clone(),
            ..*self
        })
    }

    /// A deep copy converted to `dtype` on `device` (in the layout `new` picks there).
    pub fn to(&self, dtype: DType, device: &Device) -> Result<Self> {
        let mut out = self.empty_like(dtype, device);
        let Some((keys, values)) = self.filled()? else {
            return Ok(out);
        };
        let convert = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_dtype(dtype)?.to_device(device)?.contiguous()?)
        };
        out.fill_from(&convert(&keys)?, &convert(&values)?)?;
        Ok(out)
    }

    /// Positions held, which is also the absolute position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions this cache may write below before it must reserve (its buffers' or pages'
    /// end; a clone's length until its first reservation).
    pub fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Contiguous { capacity, .. } => *capacity,
            Storage::Paged { pages, shared } => {
                if self.len < shared * Self::PAGE {
                    self.len
                } else {
                    pages.len() * Self::PAGE
                }
            }
        }
    }

    /// Whether the cache is paged (see the module's documentation).
    pub fn is_paged(&self) -> bool {
        matches!(self.storage, Storage::Paged { .. })
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// Number of KV heads per layer.
    pub fn num_kv_heads(&self) -> usize {
        self.num_kv_heads
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Element type of the buffers.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of the buffers.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of keys and values this cache holds: a contiguous cache's buffers (spare capacity
    /// included; a copy-on-write clone counts the filled positions it shares), a paged cache's
    /// own pages (pages shared with the cache it was cloned from count there).
    pub fn memory_bytes(&self) -> usize {
        let positions = match &self.storage {
            Storage::Contiguous { capacity, .. } => *capacity,
            Storage::Paged { pages, shared } => (pages.len() - shared) * Self::PAGE,
        };
        2 * self.num_layers
            * self.num_kv_heads
            * positions
            * self.head_dim
            * self.dtype.size_in_bytes()
    }

    /// Views `[num_kv_heads, len, head_dim]` of layer `i`'s filled keys and values (paged:
    /// gathered from the pages, a copy).
    pub fn layer(&self, i: usize) -> Result<(Tensor, Tensor)> {
        self.view(i, self.len)
    }

    /// Makes room for `additional` positions beyond the committed length.
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<()> {
        let needed = self.len + additional;
        let (layers, heads, hd, len) =
            (self.num_layers, self.num_kv_heads, self.head_dim, self.len);
        let (dtype, device) = (self.dtype, &self.device);
        match &mut self.storage {
            Storage::Contiguous {
                keys,
                values,
                capacity,
            } => {
                if needed <= *capacity {
                    return Ok(());
                }
                let grown = needed.div_ceil(Self::CHUNK) * Self::CHUNK;
                let spare = (layers, heads, grown - len, hd);
                let grow = |old: Option<&Tensor>| -> Result<Tensor> {
                    let spare = Tensor::zeros(spare, dtype, device)?;
                    Ok(match old {
                        Some(old) if len > 0 => {
                            let kept = old.narrow(2, 0, len)?.contiguous()?;
                            Tensor::cat(&[&kept, &spare], 2)?
                        }
                        _ => spare,
                    })
                };
                *keys = Some(grow(keys.as_ref())?);
                *values = Some(grow(values.as_ref())?);
                *capacity = grown;
            }
            Storage::Paged { pages, shared } => {
                if additional == 0 {
                    return Ok(());
                }
                // Copy-on-write: the partly filled page holding the next position.
                let at = len / Self::PAGE;
                if at < *shared {
                    pages[at] = pages[at].copy()?;
                    *shared = at;
                }
                while pages.len() * Self::PAGE < needed {
                    let shape = (layers, heads, Self::PAGE, hd);
                    pages.push(Page {
                        keys: Tensor::zeros(shape, dtype, device)?,
                        values: Tensor::zeros(shape, dtype, device)?,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes `k`, `v` (`[num_kv_heads, n, head_dim]`, contiguous) of layer `i` right after the
    /// committed positions and returns the views of positions `0..len + n`. Room must have
    /// been reserved; the length only moves with [`KvCache::commit`], once every layer is written.
    pub(crate) fn append_layer(
        &mut self,
        i: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let n = k.dim(1)?;
        if self.len + n > self.capacity() || i >= self.num_layers {
            return Err(ModelError::InvalidInput(format!(
                "kv cache: {n} positions appended to layer {i} of {} without reservation (len \
                 {}, capacity {})",
                self.num_layers,
                self.len,
                self.capacity()
            )));
        }
        match &self.storage {
            Storage::Contiguous {
                keys: Some(keys),
                values: Some(values),
                ..
            } => {
                keys.get(i)?.slice_set(k, 1, self.len)?;
                values.get(i)?.slice_set(v, 1, self.len)?;
            }
            Storage::Paged { pages, .. } => scatter(pages, self.len, k, v, 1, |t| t.get(i))?,
            Storage::Contiguous { .. } if n == 0 => {}
            Storage::Contiguous { .. } => {
                return Err(ModelError::InvalidInput(
                    "kv cache: no buffers after reserving".into(),
                ))
            }
        }
        self.view(i, self.len + n)
    }

    /// The pieces of positions `start..start + n` by page: `(page, offset in the page, offset
    /// in the block, count)`.
    fn spans(start: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let mut done = 0;
        std::iter::from_fn(move || {
            (done < n).then(|| {
                let p = start + done;
                let (page, offset) = (p / Self::PAGE, p % Self::PAGE);
                let count = (Self::PAGE - offset).min(n - done);
                let span = (page, offset, done, count);
                done += count;
                span
            })
        })
    }

    /// Advances the length by `n` after every layer's block was appended.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Views `[num_kv_heads, len, head_dim]` of layer `i`'s first `len` positions (paged: a
    /// gathered copy when they span several pages).
    pub(crate) fn view(&self, i: usize, len: usize) -> Result<(Tensor, Tensor)> {
        if i >= self.num_layers {
            return Err(ModelError::InvalidInput(format!(
                "kv cache: layer {i} out of range ({} layers)",
                self.num_layers
            )));
        }
        let empty = || -> Result<(Tensor, Tensor)> {
            let empty = Tensor::zeros(
                (self.num_kv_heads, 0, self.head_dim),
                self.dtype,
                &self.device,
            )?;
            Ok((empty.clone(), empty))
        };
        match &self.storage {
            Storage::Contiguous {
                keys: Some(k),
                values: Some(v),
                ..
            } => Ok((k.get(i)?.narrow(1, 0, len)?, v.get(i)?.narrow(1, 0, len)?)),
            Storage::Contiguous { .. } => empty(),
            Storage::Paged { .. } if len == 0 => empty(),
            Storage::Paged { pages, .. } => gather(pages, len, 1, |t| t.get(i)),
        }
    }

    /// All layers' filled keys and values `[layers, kv, len, hd]` (paged: gathered), or `None`
    /// when empty.
    fn filled(&self) -> Result<Option<(Tensor, Tensor)>> {
        if self.len == 0 {
            return Ok(None);
        }
        let len = self.len;
        match &self.storage {
            Storage::Contiguous {
                keys: Some(k),
                values: Some(v),
                ..
            } => Ok(Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?))),
            Storage::Contiguous { .. } => Ok(None),
            Storage::Paged { pages, .. } => Ok(Some(gather(pages, len, 2, |t| Ok(t.clone()))?)),
        }
    }

    /// Copies `keys`/`values` (`[layers, kv, len, hd]`, contiguous) into the first positions
    /// of this empty cache.
    fn fill_from(&mut self, keys: &Tensor, values: &Tensor) -> Result<()> {
        let len = keys.dim(2)?;
        if len == 0 {
            return Ok(());
        }
        self.reserve(len)?;
        match &self.storage {
            Storage::Contiguous {
                keys: Some(kb),
                values: Some(vb),
                ..
            } => {
                kb.slice_set(keys, 2, 0)?;
                vb.slice_set(values, 2, 0)?;
            }
            Storage::Paged { pages, .. } => scatter(pages, 0, keys, values, 2, |t| Ok(t.clone()))?,
            Storage::Contiguous { .. } => {
                return Err(ModelError::InvalidInput(
                    "kv cache: no buffers after reserving".into(),
                ))
            }
        }
        self.commit(len);
        Ok(())
    }
}

/// What the fused CUDA kernels read of a cache (room must be reserved for the rows written).
#[cfg(feature = "cuda")]
impl vv_kernels::cuda::kv_table::KvBuffers for KvCache {
    fn position(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> usize {
        KvCache::capacity(self)
    }

    fn num_layers(&self) -> usize {
        self.num_layers
    }

    fn page_positions(&self) -> usize {
        Self::PAGE
    }

    /// `None` for a contiguous cache: the fused kernels read paged caches only.
    fn page(&self, i: usize) -> Option<(&Tensor, &Tensor)> {
        match &self.storage {
            Storage::Paged { pages, .. } => pages.get(i).map(|p| (&p.keys, &p.values)),
            Storage::Contiguous { .. } => None,
        }
    }
}

impl Clone for KvCache {
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            // No writable region: the shared buffers are never written through the clone.
            Storage::Contiguous { keys, values, .. } => Storage::Contiguous {
                keys: keys.clone(),
                values: values.clone(),
                capacity: self.len,
            },
            // The pages holding the filled positions, all shared.
            Storage::Paged { pages, .. } => {
                let held = self.len.div_ceil(Self::PAGE);
                Storage::Paged {
                    pages: pages[..held].to_vec(),
                    shared: held,
                }
            }
        };
        Self {
            storage,
            device: self.device.clone(),
            ..*self
        }
    }
}

/// Positions `0..len` of `pages`, each page's keys and values seen through `part` and taken
/// along `dim`: a view when one page holds them, else a gathered copy.
fn gather(
    pages: &[Page],
    len: usize,
    dim: usize,
    part: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let one = |which: fn(&Page) -> &Tensor| -> Result<Tensor> {
        let parts = KvCache::spans(0, len)
            .map(|(page, _, _, count)| part(which(&pages[page]))?.narrow(dim, 0, count))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(match parts.as_slice() {
            [one] => one.clone(),
            _ => Tensor::cat(&parts, dim)?,
        })
    };
    Ok((one(|p| &p.keys)?, one(|p| &p.values)?))
}

/// Writes `k`, `v` (their positions along `dim`) at positions `start..` of `pages`, each page
/// seen through `part`.
fn scatter(
    pages: &[Page],
    start: usize,
    k: &Tensor,
    v: &Tensor,
    dim: usize,
    part: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<()> {
    for (page, offset, from, count) in KvCache::spans(start, k.dim(dim)?) {
        for (dst, src) in [(&pages[page].keys, k), (&pages[page].values, v)] {
            part(dst)?.slice_set(&src.narrow(dim, from, count)?.contiguous()?, dim, offset)?;
        }
    }
    Ok(())
}

/// `[1, kv, T, hd]` -> `[kv, T, hd]`; a rank-3 tensor is returned as is.
fn drop_batch_dim(t: &Tensor) -> Result<Tensor> {
    match t.dims() {
        [_, _, _] => Ok(t.clone()),
        [1, _, _, _] => Ok(t.squeeze(0)?),
        dims => Err(ModelError::InvalidInput(format!(
            "kv cache: expected [1, kv, T, hd] or [kv, T, hd], got {dims:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(seed: usize, kv: usize, n: usize, hd: usize) -> Tensor {
        let data: Vec<f32> = (0..kv * n * hd).map(|i| (seed * 1000 + i) as f32).collect();
        Tensor::from_vec(data, (kv, n, hd), &Device::Cpu).unwrap()
    }

    /// An empty CPU cache in the given layout.
    fn cache(layers: usize, kv: usize, hd: usize, paged: bool) -> KvCache {
        KvCache::with_layout(layers, kv, hd, DType::F32, &Device::Cpu, paged)
    }

    /// Appends blocks of the given sizes to a 2-layer cache and checks it holds their concatenation.
    fn check_appends(sizes: &[usize], paged: bool) {
        let (kv, hd) = (2, 3);
        let mut cache = cache(2, kv, hd, paged);
        let mut expected_k = Vec::new();
        for (s, &n) in sizes.iter().enumerate() {
            cache.reserve(n).unwrap();
            for layer in 0..2 {
                let k = block(2 * s + layer, kv, n, hd);
                let v = (block(2 * s + layer, kv, n, hd) * -1.0).unwrap();
                let (kall, vall) = cache.append_layer(layer, &k, &v).unwrap();
                assert_eq!(kall.dims(), &[kv, cache.len() + n, hd]);
                assert_eq!(vall.dims(), &[kv, cache.len() + n, hd]);
                if layer == 1 {
                    expected_k.push(k);
                }
            }
            cache.commit(n);
        }
        let total: usize = sizes.iter().sum();
        assert_eq!(cache.len(), total);
        let step = if paged { KvCache::PAGE } else { KvCache::CHUNK };
        assert_eq!(cache.capacity(), total.div_ceil(step) * step);
        if total == 0 {
            return;
        }
        let want = Tensor::cat(&expected_k, 1).unwrap();
        let (k, v) = cache.layer(1).unwrap();
        let diff = (k - &want).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let diff = (v + &want).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn growth_across_a_chunk_or_page_boundary_keeps_the_data() {
        for (c, paged) in [(KvCache::CHUNK, false), (KvCache::PAGE, true)] {
            // Fill to one short of the step, then cross it with one block, then single tokens.
            check_appends(&[c - 1, 3, 1, 1], paged);
            check_appends(&[c, 1], paged);
            check_appends(&[2 * c + 5], paged);
        }
    }

    #[test]
    fn clone_and_from_layers_are_deep_copies() {
        let k = block(1, 2, 4, 3).unsqueeze(0).unwrap();
        let v = block(2, 2, 4, 3).unsqueeze(0).unwrap();
        let mut a = KvCache::from_layers(vec![k.clone()], vec![v.clone()]).unwrap();
        assert_eq!(a.len(), 4);
        let b = a.try_clone().unwrap();
        a.reserve(1).unwrap();
        // Overwrite position 4 of `a` and check the source tensor and the clone are untouched.
        a.append_layer(0, &block(9, 2, 1, 3), &block(9, 2, 1, 3))
            .unwrap();
        a.commit(1);
        assert_eq!(a.len(), 5);
        assert_eq!(b.len(), 4);
        let (bk, _) = b.layer(0).unwrap();
        let diff = (bk - k.squeeze(0).unwrap()).unwrap().abs().unwrap();
        assert_eq!(diff.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        assert_eq!(b.memory_bytes(), 2 * 2 * KvCache::CHUNK * 3 * 4);
    }

    #[test]
    fn paged_from_layers_try_clone_and_to_keep_the_data() {
        let n = KvCache::PAGE + 7;
        let k = block(1, 2, n, 3);
        let v = block(2, 2, n, 3);
        let contiguous = KvCache::from_layers(vec![k.clone()], vec![v.clone()]).unwrap();
        let mut paged = cache(1, 2, 3, true);
        let (kk, vv) = contiguous.filled().unwrap().unwrap();
        paged.fill_from(&kk, &vv).unwrap();
        assert!(paged.is_paged() && !contiguous.is_paged());
        let copy = paged.try_clone().unwrap();
        let back = paged.to(DType::F32, &Device::Cpu).unwrap();
        for c in [&paged, &copy, &back] {
            assert_eq!(c.len(), n);
            let (ck, cv) = c.layer(0).unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                let d = (a - b).unwrap().abs().unwrap().sum_all().unwrap();
                d.to_scalar::<f32>().unwrap()
            };
            assert_eq!(diff(&ck, &k), 0.0);
            assert_eq!(diff(&cv, &v), 0.0);
        }
        // Two pages of 1 layer × 2 heads × PAGE × 3 f32, keys and values.
        assert_eq!(paged.memory_bytes(), 2 * 2 * 2 * KvCache::PAGE * 3 * 4);
    }

    #[test]
    fn paged_clones_share_full_pages_and_copy_only_the_last() {
        let page_bytes = 2 * 2 * KvCache::PAGE * 3 * 4;
        let mut prompt = cache(1, 2, 3, true);
        for i in 0..KvCache::PAGE + 5 {
            push(&mut prompt, i as f32);
        }
        let mut utterance = prompt.clone();
        assert_eq!(
            utterance.memory_bytes(),
            0,
            "a clone owns nothing before it writes"
        );
        assert_eq!(
            utterance.capacity(),
            utterance.len(),
            "no writable room yet"
        );
        push(&mut utterance, -1.0);
        // The partly filled second page was copied; the first is still the prompt's.
        assert_eq!(utterance.memory_bytes(), page_bytes);
        for _ in 0..KvCache::PAGE {
            push(&mut utterance, -2.0);
        }
        assert_eq!(utterance.memory_bytes(), 2 * page_bytes);
        let seen = keys(&utterance);
        let expect: Vec<f32> = (0..KvCache::PAGE + 5)
            .map(|i| i as f32)
            .chain([-1.0])
            .chain(std::iter::repeat_n(-2.0, KvCache::PAGE))
            .collect();
        let row = |vals: &[f32]| -> Vec<f32> { vals.iter().flat_map(|&v| [v; 3]).collect() };
        assert_eq!(seen, [row(&expect), row(&expect)].concat());
        assert_eq!(
            keys(&prompt).len(),
            2 * 3 * (KvCache::PAGE + 5),
            "prompt untouched"
        );
    }

    /// Appends one position holding `value` to the single layer of `cache`.
    fn push(cache: &mut KvCache, value: f32) {
        let t = Tensor::full(value, (2, 1, 3), &Device::Cpu).unwrap();
        cache.reserve(1).unwrap();
        cache.append_layer(0, &t, &t).unwrap();
        cache.commit(1);
    }

    fn keys(cache: &KvCache) -> Vec<f32> {
        cache
            .layer(0)
            .unwrap()
            .0
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn cheap_clones_never_see_each_others_appends() {
        for paged in [false, true] {
            cheap_clones_in(paged);
        }
    }

    fn cheap_clones_in(paged: bool) {
        let mut original = cache(1, 2, 3, paged);
        push(&mut original, 1.0);
        let mut first = original.clone();
        let mut second = original.clone();
        push(&mut original, 2.0);
        push(&mut first, 3.0);
        push(&mut second, 4.0);
        let mut grandchild = first.clone();
        push(&mut first, 5.0);
        push(&mut grandchild, 6.0);
        let row =
            |vals: &[f32]| -> Vec<f32> { vals.iter().flat_map(|&v| [v; 3]).collect::<Vec<f32>>() };
        // Layout [kv=2, T, 3]: each head holds the same sequence.
        let both = |seq: &[f32]| [row(seq), row(seq)].concat();
        assert_eq!(keys(&original), both(&[1.0, 2.0]));
        assert_eq!(keys(&first), both(&[1.0, 3.0, 5.0]));
        assert_eq!(keys(&second), both(&[1.0, 4.0]));
        assert_eq!(keys(&grandchild), both(&[1.0, 3.0, 6.0]));
    }

    #[test]
    fn from_layers_rejects_mismatched_shapes() {
        let k = block(1, 2, 4, 3);
        let v = block(2, 2, 5, 3);
        let err = KvCache::from_layers(vec![k], vec![v]).unwrap_err();
        assert_eq!(err.code(), "invalid_input");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        #[test]
        fn any_sequence_of_appends_concatenates(
            sizes in prop::collection::vec(1usize..300, 0..5),
            paged: bool,
        ) {
            check_appends(&sizes, paged);
        }
    }
}
