//! Grouped-query self-attention of a Qwen2 layer over several streams, each with its own cache.
//!
//! The q/k/v projections of all rows of all streams run as one matmul (the three weights are
//! concatenated at load, with the `1/√d_h` score scale folded into the query part, which is
//! exact for power-of-two head widths); RoPE, cache append and attention then run per stream.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::linear::Linear;

use super::weights::{linear, tensor};
use crate::config::Qwen2Config;
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::rope::Rope;

/// Where one stream's rows sit in the packed activations, and its per-block attention inputs.
#[derive(Debug)]
pub(crate) struct StreamBlock {
    /// First row of the stream in the packed `[rows, hidden]` activations.
    start: usize,
    /// Number of new rows (tokens) of the stream.
    len: usize,
    /// RoPE tables of the block's absolute positions, `[len, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    /// Additive f32 causal mask `[len, position + len]`, bottom-right aligned; `None` for one row.
    mask: Option<Tensor>,
}

impl StreamBlock {
    /// The block of `len` rows starting at packed row `start`, at absolute `position` (the cache length).
    pub(crate) fn new(
        start: usize,
        len: usize,
        position: usize,
        rope: &Rope,
        device: &Device,
    ) -> Result<Self> {
        let (cos, sin) = rope.cos_sin(position, len)?;
        let mask = if len > 1 {
            let total = position + len;
            let data: Vec<f32> = (0..len)
                .flat_map(|i| {
                    (0..total).map(move |j| {
                        if j <= position + i {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            Some(Tensor::from_vec(data, (len, total), device)?)
        } else {
            None
        };
        Ok(Self {
            start,
            len,
            cos,
            sin,
            mask,
        })
    }
}

/// `self_attn` of one decoder layer.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    /// Fused `[q·scale; k; v]` projection with bias.
    qkv: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Reads `q_proj`, `k_proj`, `v_proj` (weight and bias) and `o_proj` (weight) under `vb`.
    pub(crate) fn new(cfg: &Qwen2Config, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.hidden_size;
        let head_dim = cfg.head_dim();
        let q_dim = cfg.num_attention_heads * head_dim;
        let kv_dim = cfg.num_key_value_heads * head_dim;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q_vb = vb.pp("q_proj");
        let k_vb = vb.pp("k_proj");
        let v_vb = vb.pp("v_proj");
        let weight = Tensor::cat(
            &[
                (tensor(&q_vb, (q_dim, hidden), "weight")? * scale)?,
                tensor(&k_vb, (kv_dim, hidden), "weight")?,
                tensor(&v_vb, (kv_dim, hidden), "weight")?,
            ],
            0,
        )?;
        let bias = Tensor::cat(
            &[
                (tensor(&q_vb, q_dim, "bias")? * scale)?,
                tensor(&k_vb, kv_dim, "bias")?,
                tensor(&v_vb, kv_dim, "bias")?,
            ],
            0,
        )?;
        Ok(Self {
            qkv: Linear::new(weight, Some(bias)),
            o_proj: linear(&vb.pp("o_proj"), q_dim, hidden, false)?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim,
        })
    }

    /// `x`: packed `[rows, hidden]` (already normed) of all `blocks`; appends every stream's
    /// keys/values to layer `layer` of its cache and returns `residual` plus the projected
    /// attention output.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        residual: &Tensor,
        blocks: &[StreamBlock],
        caches: &mut [&mut KvCache],
        layer: usize,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let rows = x.dim(0)?;
        let qkv = self.qkv.forward(x)?.reshape((rows, nh + 2 * nkv, hd))?;
        // Per stream: rotated queries, and its cache's keys/values with the new rows appended.
        let mut parts = Vec::with_capacity(blocks.len());
        for (block, cache) in blocks.iter().zip(caches.iter_mut()) {
            let qkv = qkv.narrow(0, block.start, block.len)?;
            let qk = Rope::apply(&qkv.narrow(1, 0, nh + nkv)?, &block.cos, &block.sin)?;
            let k = qk.narrow(1, nh, nkv)?.transpose(0, 1)?.contiguous()?;
            let v = qkv
                .narrow(1, nh + nkv, nkv)?
                .transpose(0, 1)?
                .contiguous()?;
            let (keys, values) = cache.append_layer(layer, &k, &v)?;
            parts.push((qk.narrow(1, 0, nh)?, keys, values));
        }
        #[cfg(feature = "cuda")]
        if let Some(out) = self.attend_fused(&parts)? {
            return Ok(self.o_proj.forward_add(&out, Some(residual))?);
        }
        let outs = parts
            .iter()
            .zip(blocks)
            .map(|((q, keys, values), block)| self.attend(q, keys, values, block.mask.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let out = match outs.as_slice() {
            [single] => single.clone(),
            _ => Tensor::cat(&outs, 0)?,
        };
        Ok(self.o_proj.forward_add(&out, Some(residual))?)
    }

    /// All streams' attention in one fused CUDA launch (one or two streams, the kernel's causal
    /// rule being the mask's: query i of n sees keys ..= T - n + i); `None` where it does not
    /// apply (another device or dtype, more streams, a cache beyond the kernel's size).
    #[cfg(feature = "cuda")]
    fn attend_fused(&self, parts: &[(Tensor, Tensor, Tensor)]) -> Result<Option<Tensor>> {
        use crate::cuda_kernels::attention::{attention, fits, StreamQkv};
        let Some((q, ..)) = parts.first() else {
            return Ok(None);
        };
        let applies = q.device().is_cuda()
            && parts.len() <= 2
            && crate::cuda_kernels::supported(q.dtype())
            && parts
                .iter()
                .all(|(_, keys, _)| keys.dim(1).is_ok_and(|t| fits(t, self.head_dim)));
        if !applies {
            return Ok(None);
        }
        let streams: Vec<StreamQkv> = parts
            .iter()
            .map(|(q, keys, values)| StreamQkv { q, keys, values })
            .collect();
        Ok(Some(attention(&streams)?))
    }

    /// Scaled queries `[n, heads, hd]` against `keys`/`values` `[kv, T, hd]` -> `[n, heads·hd]`.
    fn attend(
        &self,
        q: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = nh / nkv;
        let n = q.dim(0)?;
        let t = keys.dim(1)?;
        // Query head h = kv·group + g; rows of KV head kv are (g, i) pairs, g-major.
        let q = q
            .transpose(0, 1)?
            .contiguous()?
            .reshape((nkv, group * n, hd))?;
        let scores = q.matmul(&keys.t()?)?.to_dtype(DType::F32)?;
        let scores = match mask {
            Some(mask) => scores.reshape((nkv, group, n, t))?.broadcast_add(mask)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(values.dtype())?
            .reshape((nkv, group * n, t))?;
        let out = probs.matmul(values)?;
        Ok(out
            .reshape((nh, n, hd))?
            .transpose(0, 1)?
            .reshape((n, nh * hd))?)
    }
}
