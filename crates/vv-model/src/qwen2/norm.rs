//! RMSNorm with the reference's precision: statistics and scaling in f32, result in the input dtype.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::weights::tensor;
use crate::error::Result;

/// `w ⊙ x / sqrt(mean(x²) + ε)` over the last dimension (`weight` of shape `[size]`).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Reads `weight` `[size]` under `vb`.
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: tensor(&vb, size, "weight")?,
            eps: eps as f32,
        })
    }

    /// Normalises the last dimension of `x`.
    ///
    /// The fused GPU kernels and the CPU f32 kernel accumulate and scale in f32; for a half
    /// type on the CPU (whose fused kernel divides in that type) the input is upcast first.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        #[cfg(feature = "cuda")]
        if vv_kernels::cuda::rms_norm::applies(&x) {
            return Ok(vv_kernels::cuda::rms_norm::rms_norm(
                &x,
                &self.weight,
                self.eps,
            )?);
        }
        if x.dtype() == DType::F32 || !x.device().is_cpu() {
            return Ok(candle_nn::ops::rms_norm(&x, &self.weight, self.eps)?);
        }
        let y = candle_nn::ops::rms_norm(
            &x.to_dtype(DType::F32)?,
            &self.weight.to_dtype(DType::F32)?,
            self.eps,
        )?;
        Ok(y.to_dtype(x.dtype())?)
    }
}
