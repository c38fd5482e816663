//! Depthwise causal convolution (the Block1D mixer) as shifted multiply-adds on time-major
//! rows of a batch of streams (`[B·T, C]`, each stream with its history): a fused CPU kernel
//! for f32 on the CPU, one NVRTC kernel on CUDA for the whole batch (f32 and bf16, which also
//! carries the histories), candle ops elsewhere.
//!
//! candle's grouped `conv1d` loops over the groups and is orders of magnitude slower (CPU and
//! CUDA) than `K` broadcast multiply-adds of shifted time slices, so it is never used.

use candle_core::{bail, Device, Result, Tensor};

use super::conv::by_stream;
use super::state::extend_history;
use vv_kernels::cpu::{self as cpu, CpuSlice};

/// The Block1D mixer on new normed rows `[B·T, C]` with the streams' carried histories
/// `[B, K - 1, C]` (updated): one fused kernel on CUDA, else each stream's window is formed and
/// passed to [`depthwise_causal`].
pub(super) fn mix(
    history: &mut Tensor,
    normed: &Tensor,
    taps_bias: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if normed.device().is_cuda() && vv_kernels::cuda::supported(normed.dtype()) {
        let (out, next) =
            vv_kernels::cuda::depthwise::depthwise_causal(history, normed, taps_bias, residual)?;
        *history = next;
        return Ok(out);
    }
    let (batch, len, c) = by_stream(normed, history)?;
    let window = extend_history(history, &normed.reshape((batch, len, c))?)?;
    let outs = (0..batch)
        .map(|b| {
            depthwise_causal(
                &window.get(b)?,
                taps_bias,
                &residual.narrow(0, b * len, len)?,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    match outs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Tensor::cat(&outs, 0),
    }
}

/// `residual + bias + Σ_k taps[k] ⊙ window[k .. k + T]`, with `window` `[K - 1 + T, C]` (history
/// first), `taps_bias` `[K + 1, C]` (the `K` taps, then the bias) and `residual` `[T, C]`.
fn depthwise_causal(window: &Tensor, taps_bias: &Tensor, residual: &Tensor) -> Result<Tensor> {
    let (rows, c) = taps_bias.dims2()?;
    let kernel = rows.saturating_sub(1);
    let (len, res_c) = residual.dims2()?;
    if kernel == 0 || window.dims() != [len + kernel - 1, c] || res_c != c {
        bail!(
            "depthwise conv: window {:?}, taps+bias {:?}, residual {:?}",
            window.dims(),
            taps_bias.dims(),
            residual.dims()
        );
    }
    let (window, taps_bias, residual) = (
        window.contiguous()?,
        taps_bias.contiguous()?,
        residual.contiguous()?,
    );
    if cpu::eligible(&[&window, &taps_bias, &residual]) {
        let all = CpuSlice::new(&taps_bias)?;
        let (taps, bias) = all.get()?.split_at(kernel * c);
        let out = cpu::depthwise_causal(
            CpuSlice::new(&window)?.get()?,
            taps,
            bias,
            CpuSlice::new(&residual)?.get()?,
            c,
        );
        return Tensor::from_vec(out, (len, c), &Device::Cpu);
    }
    let taps = taps_bias.narrow(0, 0, kernel)?;
    let mut acc = residual.broadcast_add(&taps_bias.get(kernel)?)?;
    for k in 0..kernel {
        acc = (acc + window.narrow(0, k, len)?.broadcast_mul(&taps.get(k)?)?)?;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, D};

    #[test]
    fn shifted_multiply_adds_equal_grouped_conv1d_on_both_paths() -> Result<()> {
        let dev = Device::Cpu;
        let (c, t, k) = (12usize, 19usize, 7usize);
        let x = Tensor::randn(0f32, 1., (1, c, t), &dev)?;
        let w = Tensor::randn(0f32, 1., (c, 1, k), &dev)?;
        let b = Tensor::randn(0f32, 1., c, &dev)?;
        let r = Tensor::randn(0f32, 1., (t, c), &dev)?;
        // Reference: candle's grouped conv on the zero left-padded input, plus bias and residual.
        let padded = x.pad_with_zeros(D::Minus1, k - 1, 0)?;
        let want = (padded
            .conv1d(&w, 0, 1, 1, c)?
            .broadcast_add(&b.reshape((1, c, 1))?)?
            .squeeze(0)?
            .t()?
            + &r)?;
        // Ours, time-major with the zero history as the first K - 1 rows.
        let window = padded.squeeze(0)?.t()?.contiguous()?;
        let taps_bias = Tensor::cat(&[&w.squeeze(1)?.t()?, &b.unsqueeze(0)?], 0)?;
        // f32 takes the fused CPU kernel, f64 the candle-op path used on other devices.
        for dtype in [DType::F32, DType::F64] {
            let cast = |t: &Tensor| t.to_dtype(dtype);
            let got = depthwise_causal(&cast(&window)?, &cast(&taps_bias)?, &cast(&r)?)?;
            let err = (got.to_dtype(DType::F32)? - &want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(err < 1e-5, "{dtype:?}: max abs error {err}");
        }
        Ok(())
    }
}
