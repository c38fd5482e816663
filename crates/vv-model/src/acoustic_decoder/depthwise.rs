//! The Block1D mixer (RMSNorm, then a depthwise causal convolution with its bias and the
//! residual) on time-major rows of a batch of streams (`[B·T, C]`, each stream with its
//! carried normed rows): one fused kernel for f32 on the CPU (`vv_kernels::cpu::norm_mix`),
//! one NVRTC kernel for the convolution on CUDA (f32 and bf16, which also carries the
//! histories), candle ops elsewhere.
//!
//! candle's grouped `conv1d` loops over the groups and is orders of magnitude slower (CPU and
//! CUDA) than `K` broadcast multiply-adds of shifted time slices, so it is never used.

use candle_core::{bail, Device, Result, Tensor};

use super::block::rms_norm;
use super::conv::by_stream;
use super::state::extend_history;
use vv_kernels::cpu::{self as cpu, CpuSlice};

/// The mixer on rows `x` (`[B·T, C]`) with the streams' carried normed rows `history`
/// (`[B, K - 1, C]`, replaced by the next ones): `x + bias + Σ_k taps[k] ⊙ window[t + k]`
/// over each stream's window of carried then normed (`norm`, `eps`) rows; `taps_bias` is
/// `[K + 1, C]` (the `K` taps, then the bias).
pub(super) fn mix(
    history: &mut Tensor,
    x: &Tensor,
    norm: &Tensor,
    eps: f32,
    taps_bias: &Tensor,
) -> Result<Tensor> {
    let (batch, len, c) = by_stream(x, history)?;
    if cpu::eligible(&[x, history, norm, taps_bias]) {
        let (x, hist, norm, taps_bias) = (
            x.contiguous()?,
            history.contiguous()?,
            norm.contiguous()?,
            taps_bias.contiguous()?,
        );
        let all = CpuSlice::new(&taps_bias)?;
        let (taps, bias) = all.get()?.split_at(taps_bias.elem_count() - c);
        let norm = CpuSlice::new(&norm)?;
        let m = cpu::Mixer {
            norm: norm.get()?,
            eps,
            taps,
            bias,
        };
        let (out, next) = cpu::norm_mix(
            CpuSlice::new(&x)?.get()?,
            CpuSlice::new(&hist)?.get()?,
            batch,
            &m,
        );
        *history = Tensor::from_vec(next, hist.dims(), &Device::Cpu)?;
        return Tensor::from_vec(out, (batch * len, c), &Device::Cpu);
    }
    let normed = rms_norm(x, norm, eps)?;
    #[cfg(feature = "cuda")]
    if normed.device().is_cuda() && vv_kernels::cuda::supported(normed.dtype()) {
        let (out, next) =
            vv_kernels::cuda::depthwise::depthwise_causal(history, &normed, taps_bias, x)?;
        *history = next;
        return Ok(out);
    }
    let window = extend_history(history, &normed.reshape((batch, len, c))?)?;
    let outs = (0..batch)
        .map(|b| depthwise_causal(&window.get(b)?, taps_bias, &x.narrow(0, b * len, len)?))
        .collect::<Result<Vec<_>>>()?;
    match outs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Tensor::cat(&outs, 0),
    }
}

/// `residual + bias + Σ_k taps[k] ⊙ window[k .. k + T]` in candle ops, with `window`
/// `[K - 1 + T, C]` (history first), `taps_bias` `[K + 1, C]` (the `K` taps, then the bias)
/// and `residual` `[T, C]`.
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

    /// Two streams with carried rows, on the fused CPU kernel (f32) and the candle-op path
    /// (f64): the output equals candle's RMSNorm and grouped `conv1d` over each stream's
    /// carried and normed rows, plus bias and residual, and the carried rows move on.
    #[test]
    fn the_mixer_equals_rms_norm_then_grouped_conv1d_on_both_paths() -> Result<()> {
        let dev = Device::Cpu;
        let (batch, c, t, k, eps) = (2usize, 12usize, 19usize, 7usize, 1e-5f32);
        let x = Tensor::randn(0f32, 1., (batch * t, c), &dev)?;
        let carried = Tensor::randn(0f32, 1., (batch, k - 1, c), &dev)?;
        let norm = Tensor::randn(1f32, 0.2, c, &dev)?;
        let w = Tensor::randn(0f32, 1., (c, 1, k), &dev)?;
        let b = Tensor::randn(0f32, 1., c, &dev)?;
        let taps_bias = Tensor::cat(&[&w.squeeze(1)?.t()?, &b.unsqueeze(0)?], 0)?;
        let normed = candle_nn::ops::rms_norm_slow(&x, &norm, eps)?;
        let mut want = Vec::new();
        let mut want_next = Vec::new();
        for s in 0..batch {
            // Channels-first window: the stream's carried rows, then its normed rows.
            let own = normed.narrow(0, s * t, t)?;
            let window = Tensor::cat(&[&carried.get(s)?, &own], 0)?;
            let conv = window.t()?.unsqueeze(0)?.conv1d(&w, 0, 1, 1, c)?;
            let conv = conv
                .broadcast_add(&b.reshape((1, c, 1))?)?
                .squeeze(0)?
                .t()?;
            want.push((conv + x.narrow(0, s * t, t)?)?);
            want_next.push(window.narrow(0, t, k - 1)?.unsqueeze(0)?);
        }
        let (want, want_next) = (Tensor::cat(&want, 0)?, Tensor::cat(&want_next, 0)?);
        for dtype in [DType::F32, DType::F64] {
            let cast = |t: &Tensor| t.to_dtype(dtype);
            let mut history = cast(&carried)?;
            let got = mix(
                &mut history,
                &cast(&x)?,
                &cast(&norm)?,
                eps,
                &cast(&taps_bias)?,
            )?;
            for (got, want) in [(&got, &want), (&history, &want_next)] {
                let err = (got.to_dtype(DType::F32)? - want)?
                    .abs()?
                    .flatten_all()?
                    .max(D::Minus1)?
                    .to_scalar::<f32>()?;
                assert!(err < 1e-4, "{dtype:?}: max abs error {err}");
            }
        }
        Ok(())
    }
}
