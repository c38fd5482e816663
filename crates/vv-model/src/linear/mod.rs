//! Linear layers `y = x·Wᵀ + b` in PyTorch weight layout, with the fused CPU f32 kernels (one
//! pass over the weights for few rows, bias/GELU/residual in one epilogue; dense, bf16 or int8
//! weights) and plain candle ops on every other device and dtype.

mod fused;
mod weight;

pub(crate) use fused::{linear, Epilogue};
pub use vv_kernels::cpu::WeightFormat;
pub use weight::{LinearWeight, Packing, PACK_MIN_ELEMENTS, TALL_MIN_ROWS};

use candle_core::{Module, Result, Tensor, D};

/// A linear layer: `weight` `[out, in]` and an optional `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer from a PyTorch-layout weight `[out, in]` (a tensor or a packed weight) and an
    /// optional bias `[out]`.
    pub fn new(weight: impl Into<LinearWeight>, bias: Option<Tensor>) -> Self {
        Self {
            weight: weight.into(),
            bias,
        }
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &LinearWeight {
        &self.weight
    }

    /// `x·Wᵀ + b + residual` for `x` `[.., in]`; `residual` has the output's shape.
    pub fn forward_add(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let dims = x.dims();
        let k = x.dim(D::Minus1)?;
        let m = x.elem_count() / k.max(1);
        let (n, _) = self.weight.dims()?;
        let flat_residual = residual.map(|r| r.reshape((m, n))).transpose()?;
        // Rows are tokens (or frames) of separate streams: each is its own stream.
        let e = Epilogue {
            bias: self.bias.as_ref(),
            gelu: false,
            residual: flat_residual.as_ref(),
            stream_rows: Some(1),
        };
        let y = linear(&x.reshape((m, k))?, &self.weight, e)?;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = n;
        }
        y.reshape(out_dims)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_add(x, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn matches_candle_nn_for_batched_inputs_with_bias_and_residual() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 40), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.2, (24, 40), &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 24, &dev).unwrap();
        let r = Tensor::randn(0f32, 1., (2, 3, 24), &dev).unwrap();
        let ours = Linear::new(w.clone(), Some(b.clone()))
            .forward_add(&x, Some(&r))
            .unwrap();
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let want = (candle_nn::Linear::new(f64(&w), Some(f64(&b)))
            .forward(&f64(&x))
            .unwrap()
            + f64(&r))
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        assert_eq!(ours.dims(), [2, 3, 24]);
        let err = crate::parity::max_abs_diff(&ours, &want).unwrap();
        assert!(err < 1e-4, "max abs error {err}");
    }
}
