//! Tensor comparison: the error metric and the per-tensor report.

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::error::Result;

/// The error of one output tensor against its golden value.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Component the tensor belongs to (`lm`, `diffusion_head`, ...).
    pub component: String,
    /// Golden tensor name.
    pub name: String,
    /// `max |got - want|`.
    pub max_abs: f64,
    /// `max |got - want| / max |want|` (the spec's metric).
    pub rel: f64,
    /// Largest accepted `rel`.
    pub tolerance: f64,
}

impl TensorReport {
    /// Compares `got` with `want` and records the error against `tolerance`.
    pub fn new(
        component: &str,
        name: &str,
        got: &Tensor,
        want: &Tensor,
        tolerance: f64,
    ) -> Result<Self> {
        let max_abs = max_abs_diff(got, want)?;
        Ok(Self {
            component: component.to_string(),
            name: name.to_string(),
            max_abs,
            rel: relative_error(got, want)?,
            tolerance,
        })
    }

    /// Whether the error is within tolerance (NaN never passes).
    pub fn passed(&self) -> bool {
        self.rel.is_finite() && self.rel <= self.tolerance
    }
}

/// `max |a - b|` over all elements, computed in f64; shapes must have the same element count.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_dtype(DType::F64)?.flatten_all()?;
    let b = b
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_device(a.device())?;
    if a.dims() != b.dims() {
        return Err(candle_core::Error::Msg(format!(
            "shape mismatch: {:?} vs {:?}",
            a.dims(),
            b.dims()
        ))
        .into());
    }
    let diff = (a - b)?.abs()?.max(0)?.to_scalar::<f64>()?;
    Ok(if diff.is_nan() { f64::INFINITY } else { diff })
}

/// `max |a - b| / max |b|`; a zero reference falls back to the absolute error.
pub fn relative_error(got: &Tensor, want: &Tensor) -> Result<f64> {
    let diff = max_abs_diff(got, want)?;
    let scale = want
        .to_dtype(DType::F64)?
        .flatten_all()?
        .abs()?
        .max(0)?
        .to_scalar::<f64>()?;
    Ok(if scale > 0.0 { diff / scale } else { diff })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn relative_error_uses_the_reference_scale() {
        let d = Device::Cpu;
        let want = Tensor::new(&[1.0f32, -4.0, 2.0], &d).unwrap();
        let got = Tensor::new(&[1.0f32, -4.0, 2.4], &d).unwrap();
        let r = TensorReport::new("t", "x", &got, &want, 0.2).unwrap();
        assert!((r.max_abs - 0.4).abs() < 1e-6);
        assert!((r.rel - 0.1).abs() < 1e-6);
        assert!(r.passed());
    }

    #[test]
    fn nan_never_passes() {
        let d = Device::Cpu;
        let want = Tensor::new(&[1.0f32, 2.0], &d).unwrap();
        let got = Tensor::new(&[f32::NAN, 2.0], &d).unwrap();
        let r = TensorReport::new("t", "x", &got, &want, 1.0).unwrap();
        assert!(!r.passed());
    }
}
