//! Grouped-query self-attention of a Qwen2 layer over several streams, each with its own cache.
//!
//! The q/k/v projections of all rows of all streams run as one matmul (the three weights are
//! concatenated at load, with the `1/√d_h` score scale folded into the query part, which is
//! exact for power-of-two head widths); RoPE, cache append and attention then run per stream,
//! or on CUDA as two fused launches for all streams (`vv_kernels::cuda`).

use std::cell::OnceCell;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::linear::{Linear, Packing};

use super::weights::{linear, tensor};
use crate::config::Qwen2Config;
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::rope::Rope;

/// Where one stream's rows sit in the packed activations, and its causal mask once built.
#[derive(Debug)]
pub(crate) struct StreamBlock {
    /// First row of the stream in the packed `[rows, hidden]` activations.
    start: usize,
    /// Number of new rows (tokens) of the stream.
    len: usize,
    /// Absolute position of the first row (the cache length before the block).
    position: usize,
    /// Additive f32 causal mask `[len, position + len]`, bottom-right aligned, built by the
    /// first layer that needs it (the fused CUDA kernel does not) and shared by the others;
    /// `None` for one row.
    mask: OnceCell<Option<Tensor>>,
}

impl StreamBlock {
    /// The block of `len` rows starting at packed row `start`, at absolute `position` (the cache length).
    pub(crate) fn new(start: usize, len: usize, position: usize) -> Self {
        Self {
            start,
            len,
            position,
            mask: OnceCell::new(),
        }
    }

    /// The block's causal mask on `device` (`None` for one row).
    fn mask(&self, device: &Device) -> Result<Option<&Tensor>> {
        if let Some(mask) = self.mask.get() {
            return Ok(mask.as_ref());
        }
        let (len, position) = (self.len, self.position);
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
        Ok(self.mask.get_or_init(|| mask).as_ref())
    }
}

/// What the layers of one forward read besides the activations: the RoPE tables, and the
/// streams' caches, as blocks and caches for candle ops or as a device table for the fused
/// CUDA kernels.
pub(crate) struct StepContext<'a, 'b> {
    pub(super) rope: &'a Rope,
    /// One block per stream (unused by the fused kernels).
    pub(super) blocks: Vec<StreamBlock>,
    /// The streams' caches, appended to by candle ops (unused by the fused kernels).
    pub(super) caches: &'a mut [&'b mut KvCache],
    /// The caches as the fused kernels reach them; `None` runs candle ops.
    #[cfg(feature = "cuda")]
    pub(super) kv: Option<vv_kernels::cuda::kv_table::KvTable>,
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
    /// Reads `q_proj`, `k_proj`, `v_proj` (weight and bias) and `o_proj` (weight) under `vb`,
    /// stored as `packing.sensitive()` says (bf16 under int8).
    pub(crate) fn new(cfg: &Qwen2Config, vb: VarBuilder, packing: Packing) -> Result<Self> {
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
        let packing = packing.sensitive();
        Ok(Self {
            qkv: Linear::new(packing.weight(weight, 1)?, Some(bias)),
            o_proj: linear(&vb.pp("o_proj"), q_dim, hidden, false, packing)?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim,
        })
    }

    /// `x`: packed `[rows, hidden]` (already normed) of all streams; rotates and appends every
    /// stream's keys/values to layer `layer` of its cache and returns `residual` plus the projected
    /// attention output.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        residual: &Tensor,
        ctx: &mut StepContext,
        layer: usize,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let rows = x.dim(0)?;
        let qkv = self.qkv.forward(x)?.reshape((rows, nh + 2 * nkv, hd))?;
        #[cfg(feature = "cuda")]
        if let Some(kv) = &ctx.kv {
            use vv_kernels::cuda::{attention::attention, rope_append::rope_append};
            let (cos, sin) = ctx.rope.tables();
            let q = rope_append(&qkv, cos, sin, nh, kv, layer)?;
            let out = attention(&q, nkv, kv, layer)?;
            return Ok(self.o_proj.forward_add(&out, Some(residual))?);
        }
        // Per stream: rotated queries, and its cache's keys/values with the new rows appended.
        let mut parts = Vec::with_capacity(ctx.blocks.len());
        for (block, cache) in ctx.blocks.iter().zip(ctx.caches.iter_mut()) {
            let qkv = qkv.narrow(0, block.start, block.len)?;
            let (cos, sin) = ctx.rope.cos_sin(cache.len(), block.len)?;
            let qk = Rope::apply(&qkv.narrow(1, 0, nh + nkv)?, &cos, &sin)?;
            let k = qk.narrow(1, nh, nkv)?.transpose(0, 1)?.contiguous()?;
            let v = qkv
                .narrow(1, nh + nkv, nkv)?
                .transpose(0, 1)?
                .contiguous()?;
            let (keys, values) = cache.append_layer(layer, &k, &v)?;
            parts.push((qk.narrow(1, 0, nh)?, keys, values));
        }
        let outs = parts
            .iter()
            .zip(&ctx.blocks)
            .map(|((q, keys, values), block)| self.attend(q, keys, values, block.mask(x.device())?))
            .collect::<Result<Vec<_>>>()?;
        let out = match outs.as_slice() {
            [single] => single.clone(),
            _ => Tensor::cat(&outs, 0)?,
        };
        Ok(self.o_proj.forward_add(&out, Some(residual))?)
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
