//! Depthwise causal convolution as shifted multiply-adds on time-major `[T, C]` tensors.
//!
//! candle's grouped `conv1d` loops over the groups and is orders of magnitude slower (CPU and
//! CUDA) than `k` broadcast multiply-adds of shifted time slices.

use candle_core::{Result, Tensor};

/// `acc + Σ_k taps[k] ⊙ window[k .. k + T]`, with `window` `[T + K - 1, C]` (history first),
/// `taps` K tensors of shape `[C]`, and `acc` `[T, C]` (e.g. residual plus bias).
pub(super) fn shifted_multiply_add(
    window: &Tensor,
    taps: &[Tensor],
    acc: Tensor,
) -> Result<Tensor> {
    let len = window.dim(0)? + 1 - taps.len();
    let mut acc = acc;
    for (k, tap) in taps.iter().enumerate() {
        acc = (acc + window.narrow(0, k, len)?.broadcast_mul(tap)?)?;
    }
    Ok(acc)
}

/// Splits a depthwise weight `[C, 1, K]` into K per-tap vectors `[C]`.
pub(super) fn split_taps(weight: &Tensor) -> Result<Vec<Tensor>> {
    let w = weight.squeeze(1)?.t()?.contiguous()?;
    (0..w.dim(0)?).map(|k| w.get(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    #[test]
    fn shifted_multiply_add_equals_grouped_conv1d() -> Result<()> {
        let dev = Device::Cpu;
        let (c, t, k) = (12usize, 19usize, 7usize);
        let x = Tensor::randn(0f32, 1., (1, c, t), &dev)?;
        let w = Tensor::randn(0f32, 1., (c, 1, k), &dev)?;
        let b = Tensor::randn(0f32, 1., c, &dev)?;
        // Reference: candle's grouped conv on the zero left-padded input.
        let padded = x.pad_with_zeros(D::Minus1, k - 1, 0)?;
        let want = padded
            .conv1d(&w, 0, 1, 1, c)?
            .broadcast_add(&b.reshape((1, c, 1))?)?
            .squeeze(0)?
            .t()?;
        // Ours, time-major with the zero history as the first K - 1 rows.
        let window = padded.squeeze(0)?.t()?.contiguous()?;
        let acc = b.unsqueeze(0)?.broadcast_as((t, c))?.contiguous()?;
        let got = shifted_multiply_add(&window, &split_taps(&w)?, acc)?;
        let err = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(err < 1e-5, "max abs error {err}");
        Ok(())
    }
}
