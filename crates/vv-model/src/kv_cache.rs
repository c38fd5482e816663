//! Per-stream KV cache of a Qwen2 layer stack, preallocated in chunks and filled in place.
//!
//! All layers' keys live in one buffer `[layers, num_kv_heads, capacity, head_dim]` (keys
//! stored after RoPE, HF `DynamicCache` order without the batch dimension), the values in
//! another, so that copying a cache (a new utterance from its voice's prompt) or growing it is
//! one copy per buffer, not one per layer. Appending a block writes into the spare capacity with
//! `slice_set`; the buffers are reallocated (one copy) only when a block does not fit, growing
//! by whole chunks of [`KvCache::CHUNK`]. The cache length is the stream's next absolute
//! position.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// Keys and values of every layer of one stream (one utterance's lower LM, positive or
/// negative TTS LM).
///
/// `clone()` is cheap and copy-on-write: the clone shares the filled positions and has no spare
/// capacity, so its first append copies into fresh buffers, and the original only ever writes
/// past the positions the clone can see. [`KvCache::try_clone`] copies eagerly.
#[derive(Debug)]
pub struct KvCache {
    /// `[layers, num_kv_heads, capacity, head_dim]`; `None` until the first reservation.
    keys: Option<Tensor>,
    /// Same layout as `keys`.
    values: Option<Tensor>,
    num_layers: usize,
    num_kv_heads: usize,
    head_dim: usize,
    /// Positions held (committed); also the next position of the stream.
    len: usize,
    /// Positions the buffers can hold without reallocating.
    capacity: usize,
    dtype: DType,
    device: Device,
}

impl KvCache {
    /// Growth step of the buffers, in positions.
    pub const CHUNK: usize = 256;

    /// An empty cache; no memory is allocated before the first token.
    pub fn new(
        num_layers: usize,
        num_kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            keys: None,
            values: None,
            num_layers,
            num_kv_heads,
            head_dim,
            len: 0,
            capacity: 0,
            dtype,
            device: device.clone(),
        }
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
    /// buffer, spare capacity included.
    pub fn try_clone(&self) -> Result<Self> {
        let copy = |t: &Option<Tensor>| t.as_ref().map(Tensor::copy).transpose();
        Ok(Self {
            keys: copy(&self.keys)?,
            values: copy(&self.values)?,
            device: self.device.clone(),
            ..*self
        })
    }

    /// A deep copy converted to `dtype` on `device`.
    pub fn to(&self, dtype: DType, device: &Device) -> Result<Self> {
        let mut out = Self::new(
            self.num_layers,
            self.num_kv_heads,
            self.head_dim,
            dtype,
            device,
        );
        let (Some(keys), Some(values)) = (&self.keys, &self.values) else {
            return Ok(out);
        };
        if self.len == 0 {
            return Ok(out);
        }
        let convert = |t: &Tensor| -> Result<Tensor> {
            Ok(t.narrow(2, 0, self.len)?
                .to_dtype(dtype)?
                .to_device(device)?
                .contiguous()?)
        };
        out.fill_from(&convert(keys)?, &convert(values)?)?;
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

    /// Positions the current buffers can hold before they are reallocated.
    pub fn capacity(&self) -> usize {
        self.capacity
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

    /// Bytes of keys and values this cache can hold without reallocating (its capacity, all
    /// layers); a copy-on-write clone counts only the filled positions it shares.
    pub fn memory_bytes(&self) -> usize {
        2 * self.num_layers
            * self.num_kv_heads
            * self.capacity
            * self.head_dim
            * self.dtype.size_in_bytes()
    }

    /// Views `[num_kv_heads, len, head_dim]` of layer `i`'s filled keys and values.
    pub fn layer(&self, i: usize) -> Result<(Tensor, Tensor)> {
        self.view(i, self.len)
    }

    /// Makes room for `additional` positions beyond the committed length.
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<()> {
        let needed = self.len + additional;
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.div_ceil(Self::CHUNK) * Self::CHUNK;
        let spare = (
            self.num_layers,
            self.num_kv_heads,
            capacity - self.len,
            self.head_dim,
        );
        let grow = |old: Option<&Tensor>| -> Result<Tensor> {
            let spare = Tensor::zeros(spare, self.dtype, &self.device)?;
            Ok(match old {
                Some(old) if self.len > 0 => {
                    let kept = old.narrow(2, 0, self.len)?.contiguous()?;
                    Tensor::cat(&[&kept, &spare], 2)?
                }
                _ => spare,
            })
        };
        self.keys = Some(grow(self.keys.as_ref())?);
        self.values = Some(grow(self.values.as_ref())?);
        self.capacity = capacity;
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
        if self.len + n > self.capacity {
            return Err(ModelError::InvalidInput(format!(
                "kv cache: {n} positions appended without reservation (len {}, capacity {})",
                self.len, self.capacity
            )));
        }
        let (kb, vb) = self.layer_buffers(i)?;
        kb.slice_set(k, 1, self.len)?;
        vb.slice_set(v, 1, self.len)?;
        self.view(i, self.len + n)
    }

    /// Layer `i`'s whole key and value buffers `[num_kv_heads, capacity, head_dim]` (views).
    fn layer_buffers(&self, i: usize) -> Result<(Tensor, Tensor)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) if i < self.num_layers => Ok((k.get(i)?, v.get(i)?)),
            _ => Err(ModelError::InvalidInput(format!(
                "kv cache: layer {i} of {} has no buffers (capacity {})",
                self.num_layers, self.capacity
            ))),
        }
    }

    /// Advances the length by `n` after every layer's block was appended.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Views `[num_kv_heads, len, head_dim]` of layer `i`'s first `len` positions.
    pub(crate) fn view(&self, i: usize, len: usize) -> Result<(Tensor, Tensor)> {
        if i >= self.num_layers {
            return Err(ModelError::InvalidInput(format!(
                "kv cache: layer {i} out of range ({} layers)",
                self.num_layers
            )));
        }
        if self.keys.is_none() {
            // Nothing allocated yet: empty views of the right rank.
            let empty = Tensor::zeros(
                (self.num_kv_heads, 0, self.head_dim),
                self.dtype,
                &self.device,
            )?;
            return Ok((empty.clone(), empty));
        }
        let (k, v) = self.layer_buffers(i)?;
        Ok((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?))
    }

    /// Allocates fresh buffers and copies `keys`/`values` (`[layers, kv, len, hd]`,
    /// contiguous) into their first positions.
    fn fill_from(&mut self, keys: &Tensor, values: &Tensor) -> Result<()> {
        let len = keys.dim(2)?;
        if len == 0 {
            return Ok(());
        }
        self.reserve(len)?;
        let (Some(kb), Some(vb)) = (&self.keys, &self.values) else {
            return Err(ModelError::InvalidInput(
                "kv cache: no buffers after reserving".into(),
            ));
        };
        kb.slice_set(keys, 2, 0)?;
        vb.slice_set(values, 2, 0)?;
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
        self.capacity
    }

    fn num_layers(&self) -> usize {
        self.num_layers
    }

    fn buffers(&self) -> candle_core::Result<(&Tensor, &Tensor)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => candle_core::bail!("kv cache: no buffers yet (nothing reserved)"),
        }
    }
}

impl Clone for KvCache {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            values: self.values.clone(),
            num_layers: self.num_layers,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            len: self.len,
            // No writable region: the shared buffers are never written through the clone.
            capacity: self.len,
            dtype: self.dtype,
            device: self.device.clone(),
        }
    }
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

    /// Appends blocks of the given sizes to a 2-layer cache and checks it holds their concatenation.
    fn check_appends(sizes: &[usize]) {
        let (kv, hd) = (2, 3);
        let mut cache = KvCache::new(2, kv, hd, DType::F32, &Device::Cpu);
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
        assert_eq!(
            cache.capacity(),
            total.div_ceil(KvCache::CHUNK) * KvCache::CHUNK
        );
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
    fn growth_across_a_chunk_boundary_keeps_the_data() {
        let c = KvCache::CHUNK;
        // Fill to one short of the chunk, then cross it with one block, then single tokens.
        check_appends(&[c - 1, 3, 1, 1]);
        check_appends(&[c, 1]);
        check_appends(&[2 * c + 5]);
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
        let mut original = KvCache::new(1, 2, 3, DType::F32, &Device::Cpu);
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
        fn any_sequence_of_appends_concatenates(sizes in prop::collection::vec(1usize..300, 0..5)) {
            check_appends(&sizes);
        }
    }
}
