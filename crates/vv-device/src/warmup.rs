//! Device self-tests: a tiny matmul checked against a reference computed on the host. The
//! f32 test is the device layer's part of warmup; the half-precision test decides whether
//! Metal may compute in bf16/f16.

use crate::backend::candle_device_label;
use crate::error::DeviceError;
use candle_core::{DType, Device, Tensor};
use std::time::{Duration, Instant};
use tracing::info;

const M: usize = 8;
const K: usize = 32;
const N: usize = 8;

/// Largest absolute error allowed for the f32 matmul (inputs in [-1, 1], K = 32).
const F32_TOLERANCE: f32 = 1e-4;

/// Largest absolute error allowed for a half-precision matmul: bf16 keeps 8 significand bits,
/// f16 11 (results reach about 10 in magnitude).
fn half_tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => 0.1,
        DType::F16 => 0.02,
        _ => F32_TOLERANCE,
    }
}

/// Runs an 8x32 by 32x8 f32 matmul on `device`, synchronizes, and checks the result against
/// the host reference. Returns how long it took.
pub fn device_self_test(device: &Device) -> Result<Duration, DeviceError> {
    let start = Instant::now();
    let fail = |reason: String| DeviceError::Init {
        device: candle_device_label(device),
        reason: format!("device self-test failed: {reason}"),
    };
    let error = matmul_max_error(device, DType::F32).map_err(|e| fail(e.to_string()))?;
    device.synchronize().map_err(|e| fail(e.to_string()))?;
    if error > F32_TOLERANCE {
        return Err(fail(format!(
            "f32 matmul error {error} exceeds {F32_TOLERANCE}"
        )));
    }
    let elapsed = start.elapsed();
    info!(device = %candle_device_label(device), ?elapsed, max_error = error, "device self-test passed");
    Ok(elapsed)
}

/// Runs the matmul in `dtype` on `device`; returns the largest absolute error against the
/// host reference, or why the dtype is unusable (an operation failed, or the error is too
/// large).
pub fn half_precision_self_test(device: &Device, dtype: DType) -> Result<f32, String> {
    let name = dtype.as_str();
    let error =
        matmul_max_error(device, dtype).map_err(|e| format!("{name} matmul failed: {e}"))?;
    let tolerance = half_tolerance(dtype);
    if error <= tolerance {
        info!(device = %candle_device_label(device), dtype = %name, max_error = error, "half-precision self-test passed");
        Ok(error)
    } else {
        Err(format!(
            "{name} matmul error {error} exceeds the tolerance {tolerance}"
        ))
    }
}

/// Deterministic inputs in [-1, 1].
fn inputs(len: usize, stride: usize, modulus: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * stride) % modulus) as f32 / (modulus as f32 / 2.0) - 1.0)
        .collect()
}

/// Largest absolute difference between the device's matmul in `dtype` and the f64 host
/// reference; infinite when the device returns a non-finite value.
fn matmul_max_error(device: &Device, dtype: DType) -> candle_core::Result<f32> {
    let a = inputs(M * K, 37, 101);
    let b = inputs(K * N, 53, 97);
    let lhs = Tensor::from_slice(&a, (M, K), device)?.to_dtype(dtype)?;
    let rhs = Tensor::from_slice(&b, (K, N), device)?.to_dtype(dtype)?;
    let got = lhs
        .matmul(&rhs)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut max_error = 0f32;
    for (index, value) in got.iter().enumerate() {
        let (row, col) = (index / N, index % N);
        let reference: f64 = (0..K)
            .map(|k| f64::from(a[row * K + k]) * f64::from(b[k * N + col]))
            .sum();
        let error = (f64::from(*value) - reference).abs() as f32;
        if !error.is_finite() {
            return Ok(f32::INFINITY);
        }
        max_error = max_error.max(error);
    }
    Ok(max_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_self_test_passes() {
        assert!(device_self_test(&Device::Cpu).is_ok());
    }

    #[test]
    fn cpu_matmul_errors_are_within_tolerance_and_nonzero_for_half_types() {
        let f32_error = matmul_max_error(&Device::Cpu, DType::F32).unwrap();
        assert!(f32_error <= F32_TOLERANCE, "{f32_error}");
        for dtype in [DType::BF16, DType::F16] {
            let error = half_precision_self_test(&Device::Cpu, dtype).unwrap();
            // Rounding to a half type must show up: the check compares real values.
            assert!(
                error > f32_error && error <= half_tolerance(dtype),
                "{dtype:?}: {error}"
            );
        }
    }

    #[test]
    fn inputs_stay_in_unit_range() {
        let values = inputs(M * K, 37, 101);
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!(values.iter().any(|v| *v < -0.5) && values.iter().any(|v| *v > 0.5));
    }
}
