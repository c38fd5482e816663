//! The adaLN modulation of the diffusion head: `adaLN_modulation(c) = Linear(SiLU(c))` of every
//! block and of the final layer. It depends only on the combined condition `c = cond_proj(h) +
//! temb(t)`, so a sampler computes it for all solver steps of a frame in one pass (one read of
//! these weights per frame instead of per step) and each step takes its rows.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::error::{ModelError, Result};
use crate::linear::{Linear, Packing};
use crate::qwen2::tensor;

/// `adaLN_modulation.1` of one layer, whose output chunks (shift, scale and, in the blocks,
/// gate) are computed as one projection each. Every chunk is then a contiguous tensor: a CUDA
/// graph of the sampling loop (`crate::sampler_graph`) cannot hold strided ops, whose strides
/// candle uploads from temporary host memory at every launch.
#[derive(Debug, Clone)]
pub(super) struct AdaLn {
    chunks: Vec<Linear>,
}

impl AdaLn {
    /// Reads `weight` `[chunks·h, h]` under `vb`; each chunk is stored as `packing` says.
    pub(super) fn new(vb: &VarBuilder, h: usize, chunks: usize, packing: Packing) -> Result<Self> {
        let weight = tensor(vb, (chunks * h, h), "weight")?;
        let chunks = (0..chunks)
            .map(|i| {
                let chunk = weight.narrow(0, i * h, h)?.contiguous()?;
                Ok(Linear::new(packing.weight(chunk, 1)?, None))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { chunks })
    }

    /// The chunks for `SiLU(c)`, in checkpoint order.
    fn forward(&self, silu_c: &Tensor) -> Result<Vec<Tensor>> {
        self.chunks
            .iter()
            .map(|proj| Ok(proj.forward(silu_c)?))
            .collect()
    }
}

/// One layer's parameters, `[rows, H]` each.
#[derive(Debug, Clone)]
pub(super) struct LayerParams {
    pub(super) shift: Tensor,
    pub(super) scale: Tensor,
    /// `1 + scale`, formed once for all rows.
    pub(super) scale_plus_one: Tensor,
    /// The residual gate (blocks only).
    pub(super) gate: Option<Tensor>,
}

impl LayerParams {
    fn new(chunks: Vec<Tensor>, with_gate: bool) -> Result<Self> {
        let mut chunks = chunks.into_iter();
        let (Some(shift), Some(scale)) = (chunks.next(), chunks.next()) else {
            return Err(ModelError::InvalidConfig(
                "adaLN needs shift and scale".into(),
            ));
        };
        let gate = chunks.next();
        if gate.is_some() != with_gate {
            return Err(ModelError::InvalidConfig("adaLN chunk count".into()));
        }
        Ok(Self {
            scale_plus_one: (&scale + 1.0)?,
            shift,
            scale,
            gate,
        })
    }

    /// The raw chunks concatenated as the checkpoint's layer outputs them (for traces).
    pub(super) fn concatenated(&self) -> Result<Tensor> {
        let mut parts = vec![&self.shift, &self.scale];
        parts.extend(self.gate.as_ref());
        Ok(Tensor::cat(&parts, candle_core::D::Minus1)?)
    }

    fn rows(&self, start: usize, len: usize) -> Result<Self> {
        let r = |t: &Tensor| t.narrow(0, start, len);
        Ok(Self {
            shift: r(&self.shift)?,
            scale: r(&self.scale)?,
            scale_plus_one: r(&self.scale_plus_one)?,
            gate: self.gate.as_ref().map(r).transpose()?,
        })
    }
}

/// The adaLN parameters of every block and of the final layer for a set of condition rows.
#[derive(Debug, Clone)]
pub struct Modulation {
    pub(super) blocks: Vec<LayerParams>,
    pub(super) last: LayerParams,
}

impl Modulation {
    /// Applies every layer's projection to `SiLU(c)`.
    pub(super) fn new(blocks: &[AdaLn], last: &AdaLn, c: &Tensor) -> Result<Self> {
        let silu_c = candle_nn::ops::silu(c)?;
        Ok(Self {
            blocks: blocks
                .iter()
                .map(|a| LayerParams::new(a.forward(&silu_c)?, true))
                .collect::<Result<Vec<_>>>()?,
            last: LayerParams::new(last.forward(&silu_c)?, false)?,
        })
    }

    /// Rows `start..start + len` of every parameter (one solver step's rows), as views.
    pub fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            blocks: self
                .blocks
                .iter()
                .map(|p| p.rows(start, len))
                .collect::<Result<Vec<_>>>()?,
            last: self.last.rows(start, len)?,
        })
    }
}
