//! Qwen2 decoder layers (transformers 4.51.3) as a stack shared by several streams.
//!
//! Several independent streams (utterances, or the positive and negative TTS streams) advance
//! together: their new rows are packed into one `[rows, hidden]` tensor so every linear layer
//! reads its weights once per step, while attention runs per stream against its own
//! [`KvCache`]. Positions always equal the stream's cache length.

mod attention;
mod norm;
mod weights;

pub use norm::RmsNorm;
pub(crate) use weights::{linear, tensor};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::config::Qwen2Config;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::linear::{Linear, Packing};
use crate::rope::Rope;
pub(crate) use attention::StepContext;
use attention::{Attention, StreamBlock};

/// SwiGLU feed-forward with `gate_proj` and `up_proj` fused into one matmul.
#[derive(Debug, Clone)]
struct Mlp {
    /// `[gate; up]`, `[2·intermediate, hidden]`, no bias.
    gate_up: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &Qwen2Config, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let (hidden, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let gate_up = Tensor::cat(
            &[
                tensor(&vb.pp("gate_proj"), (inter, hidden), "weight")?,
                tensor(&vb.pp("up_proj"), (inter, hidden), "weight")?,
            ],
            0,
        )?;
        Ok(Self {
            gate_up: Linear::new(packing.weight(gate_up, 1)?, None),
            down_proj: linear(&vb.pp("down_proj"), inter, hidden, false, packing)?,
        })
    }

    /// `residual + down(SiLU(gate(x)) ⊙ up(x))`.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let act = swiglu(&self.gate_up.forward(x)?)?;
        Ok(self.down_proj.forward_add(&act, Some(residual))?)
    }
}

/// `SiLU(gate) ⊙ up` of the fused `[gate; up]` projection: one fused kernel on CUDA, candle's
/// two ops elsewhere.
fn swiglu(gate_up: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if gate_up.device().is_cuda() && vv_kernels::cuda::supported(gate_up.dtype()) {
        return vv_kernels::cuda::swiglu::swiglu(gate_up);
    }
    candle_nn::ops::swiglu(gate_up)
}

/// One pre-norm Qwen2 decoder layer (`layers.{i}` of a checkpoint).
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    /// Reads `input_layernorm`, `self_attn.*`, `post_attention_layernorm` and `mlp.*` under `vb`,
    /// the projections stored as `packing` says.
    pub fn new(cfg: &Qwen2Config, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let eps = cfg.rms_norm_eps;
        Ok(Self {
            input_layernorm: RmsNorm::new(cfg.hidden_size, eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"), packing)?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"), packing)?,
        })
    }

    /// Packed residual stream `[rows, hidden]` in and out; appends to layer `index` of the caches.
    fn forward(&self, x: &Tensor, ctx: &mut StepContext, index: usize) -> Result<Tensor> {
        let a = self.input_layernorm.forward(x)?;
        let h = self.self_attn.forward(&a, x, ctx, index)?;
        let m = self.post_attention_layernorm.forward(&h)?;
        self.mlp.forward(&m, &h)
    }
}

/// A run of decoder layers with an optional final norm (the lower LM has none, the TTS LM one).
#[derive(Debug, Clone)]
pub struct Qwen2Stack {
    layers: Vec<DecoderLayer>,
    norm: Option<RmsNorm>,
    rope: Rope,
    hidden_size: usize,
    num_kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
}

impl Qwen2Stack {
    /// Reads `layers.{0..num_layers}.*` and, with `with_final_norm`, `norm.weight` under `vb`
    /// (already prefixed, e.g. `model.language_model`). Activations use `vb`'s dtype and device;
    /// the projections are stored as `packing` says.
    pub fn new(
        cfg: &Qwen2Config,
        num_layers: usize,
        with_final_norm: bool,
        vb: VarBuilder,
        packing: Packing,
    ) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|i| DecoderLayer::new(cfg, vb.pp(format!("layers.{i}")), packing))
            .collect::<Result<Vec<_>>>()?;
        let norm = if with_final_norm {
            Some(RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("norm"),
            )?)
        } else {
            None
        };
        Ok(Self {
            layers,
            norm,
            rope: Rope::from_config(cfg, vb.dtype(), vb.device())?,
            hidden_size: cfg.hidden_size,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Width of the residual stream.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Activation (and weight) dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache matching this stack (layers, KV heads, head width, dtype, device).
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.layers.len(),
            self.num_kv_heads,
            self.head_dim,
            self.dtype,
            &self.device,
        )
    }

    /// One stream: `x` `[n, hidden]` at positions `cache.len()..`, returns `[n, hidden]`.
    pub fn forward(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let n = x.dim(0)?;
        self.forward_packed(x, &[n], &mut [cache])
    }

    /// Several streams advancing together: `xs[s]` `[n_s, hidden]` with `caches[s]`; returns
    /// each stream's `[n_s, hidden]`. Linear layers run once over all rows.
    pub fn forward_batch(&self, xs: &[Tensor], caches: &mut [&mut KvCache]) -> Result<Vec<Tensor>> {
        let rows = xs
            .iter()
            .map(|x| x.dim(0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let packed = match xs {
            [single] => single.clone(),
            _ => Tensor::cat(xs, 0)?,
        };
        let out = self.forward_packed(&packed, &rows, caches)?;
        split_rows(&out, &rows)
    }

    /// Like [`Qwen2Stack::forward_batch`] with the rows already packed: `x` `[Σ rows, hidden]`,
    /// stream `s` owning the next `rows[s]` rows. Returns the packed output.
    pub fn forward_packed(
        &self,
        x: &Tensor,
        rows: &[usize],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor> {
        self.check_inputs(x, rows, caches)?;
        let mut blocks = Vec::with_capacity(rows.len());
        let mut start = 0;
        for (&n, cache) in rows.iter().zip(caches.iter_mut()) {
            cache.reserve(n)?;
            blocks.push(StreamBlock::new(start, n, cache.len()));
            start += n;
        }
        #[cfg(feature = "cuda")]
        let kv = self.kv_table(caches, rows)?;
        let mut ctx = StepContext {
            rope: &self.rope,
            blocks,
            caches,
            #[cfg(feature = "cuda")]
            kv,
        };
        let out = self.run(x, &mut ctx)?;
        for (&n, cache) in rows.iter().zip(ctx.caches.iter_mut()) {
            cache.commit(n);
        }
        Ok(out)
    }

    /// The layers and the final norm over `x` with the caches of `ctx` (appended, not
    /// committed).
    pub(crate) fn run(&self, x: &Tensor, ctx: &mut StepContext) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, ctx, i)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&h),
            None => Ok(h),
        }
    }

    /// The fused CUDA kernels' table of `caches` (room reserved for `rows`), or `None` where
    /// they do not apply (not CUDA, a dtype without kernels, positions they do not reach).
    #[cfg(feature = "cuda")]
    fn kv_table(
        &self,
        caches: &[&mut KvCache],
        rows: &[usize],
    ) -> Result<Option<vv_kernels::cuda::kv_table::KvTable>> {
        use vv_kernels::cuda::kv_table::{KvTable, StreamRows};
        let applies = self.device.is_cuda()
            && vv_kernels::cuda::supported(self.dtype)
            && caches
                .iter()
                .zip(rows)
                .all(|(c, n)| c.is_paged() && self.fused_reach(c.len() + n));
        if !applies {
            return Ok(None);
        }
        let streams: Vec<StreamRows> = caches
            .iter()
            .zip(rows)
            .map(|(cache, &rows)| StreamRows {
                cache: &**cache,
                rows,
            })
            .collect();
        Ok(Some(KvTable::upload(&streams, &self.device)?))
    }

    /// A cache no stream owns, with room for `rows` positions: the padding streams of a CUDA
    /// graph captured for more streams than a replay has write and read it (their rows are
    /// discarded), so real caches are never touched by padding.
    #[cfg(feature = "cuda")]
    pub(crate) fn scratch_cache(&self, rows: usize) -> Result<KvCache> {
        let mut cache = self.new_cache();
        cache.reserve(rows)?;
        Ok(cache)
    }

    /// The layers and the final norm through the fused CUDA kernels only, the caches reached
    /// through `kv` (what a CUDA graph captures: no host-side cache bookkeeping).
    #[cfg(feature = "cuda")]
    pub(crate) fn run_fused(
        &self,
        x: &Tensor,
        kv: vv_kernels::cuda::kv_table::KvTable,
    ) -> Result<Tensor> {
        let mut ctx = StepContext {
            rope: &self.rope,
            blocks: Vec::new(),
            caches: &mut [],
            kv: Some(kv),
        };
        self.run(x, &mut ctx)
    }

    /// Whether the fused CUDA kernels handle positions below `end` (the RoPE tables and the
    /// attention kernel's size).
    #[cfg(feature = "cuda")]
    pub(crate) fn fused_reach(&self, end: usize) -> bool {
        self.rope.tables().0.dim(0).is_ok_and(|rows| end <= rows)
            && vv_kernels::cuda::attention::fits(end, self.head_dim)
    }

    /// Whether `cache` was made for this stack (layers, KV heads, head width, dtype, device).
    pub(crate) fn fits_cache(&self, cache: &KvCache) -> bool {
        cache.num_layers() == self.layers.len()
            && cache.num_kv_heads() == self.num_kv_heads
            && cache.head_dim() == self.head_dim
            && cache.dtype() == self.dtype
            && cache.device().same_device(&self.device)
    }

    fn check_inputs(&self, x: &Tensor, rows: &[usize], caches: &[&mut KvCache]) -> Result<()> {
        let invalid = |m: String| Err(ModelError::InvalidInput(m));
        if rows.is_empty() || rows.len() != caches.len() {
            return invalid(format!(
                "{} streams but {} caches",
                rows.len(),
                caches.len()
            ));
        }
        if rows.contains(&0) {
            return invalid("every stream needs at least one new row".into());
        }
        let total: usize = rows.iter().sum();
        if x.dims() != [total, self.hidden_size] {
            return invalid(format!(
                "activations {:?}, expected [{total}, {}]",
                x.dims(),
                self.hidden_size
            ));
        }
        if x.dtype() != self.dtype {
            return invalid(format!(
                "activations are {:?}, the layers {:?}",
                x.dtype(),
                self.dtype
            ));
        }
        if let Some(cache) = caches.iter().find(|c| !self.fits_cache(c)) {
            return invalid(format!(
                "cache ({} layers, {} kv heads, head_dim {}, {:?}) does not fit the stack \
                 ({} layers, {} kv heads, head_dim {}, {:?})",
                cache.num_layers(),
                cache.num_kv_heads(),
                cache.head_dim(),
                cache.dtype(),
                self.layers.len(),
                self.num_kv_heads,
                self.head_dim,
                self.dtype
            ));
        }
        Ok(())
    }
}

/// Splits packed `[Σ rows, hidden]` back into one tensor per stream.
pub(crate) fn split_rows(packed: &Tensor, rows: &[usize]) -> Result<Vec<Tensor>> {
    let mut start = 0;
    rows.iter()
        .map(|&n| {
            let part = packed.narrow(0, start, n)?;
            start += n;
            Ok(part)
        })
        .collect()
}
