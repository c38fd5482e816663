//! Checkpoint tensor loading whose errors name the missing or malformed tensor.

use candle_core::{Shape, Tensor};
use candle_nn::VarBuilder;

use crate::linear::{Linear, Packing};

use crate::error::{ModelError, Result};

/// The tensor `name` under `vb`'s prefix, checked against `shape`.
pub(crate) fn tensor<S: Into<Shape>>(vb: &VarBuilder, shape: S, name: &str) -> Result<Tensor> {
    vb.get(shape, name).map_err(|e| {
        let prefix = vb.prefix();
        ModelError::Tensor {
            name: if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            },
            reason: e.to_string(),
        }
    })
}

/// A linear layer `weight` `[out_dim, in_dim]` (PyTorch order) plus `bias` `[out_dim]` if `bias`,
/// its weight stored as `packing` says (token rows: one row per stream).
pub(crate) fn linear(
    vb: &VarBuilder,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    packing: Packing,
) -> Result<Linear> {
    let weight = packing.weight(tensor(vb, (out_dim, in_dim), "weight")?, 1)?;
    let bias = if bias {
        Some(tensor(vb, out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}
