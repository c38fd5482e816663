//! `x [m, k] · w [n, k]ᵀ` with an optional bias, GELU(erf) and residual: fused CPU kernels for
//! f32 on the CPU (dense or packed weights), plain candle ops on every other device and dtype.

use candle_core::{bail, Device, Result, Tensor};

use vv_kernels::cpu::{self as cpu, CpuSlice, PackedWeight, TallWeight};

use super::LinearWeight;

/// What follows the matmul: `act(x·wᵀ + bias) + residual`.
#[derive(Default, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// `[n]`, added to every row.
    pub bias: Option<&'a Tensor>,
    /// GELU with the exact erf form, after the bias.
    pub gelu: bool,
    /// `[m, n]`, added last.
    pub residual: Option<&'a Tensor>,
    /// Rows of one stream when `x` packs the rows of several streams, stream by stream (the
    /// decoder's time steps of each utterance of a batch; 1 for token rows, which are all
    /// independent): the CPU picks its kernel by this, not by the batch, and above the skinny
    /// kernel's limit runs one GEMM per stream, so each stream's rows come out exactly as
    /// they do alone. `None`: all of `x` is one stream.
    pub stream_rows: Option<usize>,
}

/// `act(x · wᵀ + bias) + residual` for `x [m, k]` and a PyTorch-layout weight `w [n, k]`.
/// A packed weight needs f32 activations on the CPU.
pub(crate) fn linear(x: &Tensor, w: &LinearWeight, e: Epilogue) -> Result<Tensor> {
    let mut all = vec![x];
    all.extend(e.bias);
    all.extend(e.residual);
    let w = match w {
        LinearWeight::Packed(p) if cpu::eligible(&all) => {
            return cpu_linear(x, Matrix::Packed(p), e)
        }
        LinearWeight::Tall(t) if cpu::eligible(&all) => return cpu_linear(x, Matrix::Tall(t), e),
        LinearWeight::Packed(_) | LinearWeight::Tall(_) => bail!(
            "linear: packed weights need f32 activations on the CPU, got {:?} on {:?}",
            x.dtype(),
            x.device()
        ),
        LinearWeight::Dense(w) => w,
    };
    all.push(w);
    if cpu::eligible(&all) {
        return cpu_linear(x, Matrix::Dense(w), e);
    }
    let mut y = x.matmul(&w.t()?)?;
    #[cfg(feature = "cuda")]
    if y.device().is_cuda()
        && (e.bias.is_some() || e.gelu || e.residual.is_some())
        && vv_kernels::cuda::supported(y.dtype())
    {
        return vv_kernels::cuda::epilogue::apply(&y, e.bias, e.gelu, e.residual);
    }
    if let Some(bias) = e.bias {
        y = y.broadcast_add(bias)?;
    }
    if e.gelu {
        y = y.gelu_erf()?;
    }
    match e.residual {
        Some(residual) => y + residual,
        None => Ok(y),
    }
}

/// The weight of a CPU f32 linear.
#[derive(Clone, Copy)]
enum Matrix<'a> {
    Dense(&'a Tensor),
    Packed(&'a PackedWeight),
    Tall(&'a TallWeight),
}

impl Matrix<'_> {
    fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(w) => w.dims2(),
            Self::Packed(p) => Ok(p.dims()),
            Self::Tall(t) => Ok(t.dims()),
        }
    }

    /// `x · wᵀ` transposed (`[n, m]`) by the skinny kernels: each value is computed the same
    /// way whatever the row count.
    fn skinny(&self, x: &Tensor) -> Result<Vec<f32>> {
        let (m, k) = x.dims2()?;
        let x = x.contiguous()?;
        let xs = CpuSlice::new(&x)?;
        Ok(match self {
            Self::Dense(w) => {
                let w = w.contiguous()?;
                let ws = CpuSlice::new(&w)?;
                cpu::skinny_matmul(xs.get()?, ws.get()?, m, k, w.dim(0)?)
            }
            Self::Packed(p) => cpu::skinny_matmul_packed(xs.get()?, p, m),
            Self::Tall(t) => {
                let (n, k) = t.dims();
                cpu::skinny_matmul(xs.get()?, &t.unpack(), m, k, n)
            }
        })
    }

    /// `wᵀ` as an f32 tensor for candle's GEMM (a packed weight is unpacked: tall inputs through
    /// packed weights only come from one-shot decodes and accuracy checks, see `Packing`; a
    /// tall weight only where its kernel is missing, which `Packing` rules out).
    fn transposed(&self) -> Result<Tensor> {
        match self {
            Self::Dense(w) => w.t(),
            Self::Packed(p) => Tensor::from_vec(p.unpack(), p.dims(), &Device::Cpu)?.t(),
            Self::Tall(t) => Tensor::from_vec(t.unpack(), t.dims(), &Device::Cpu)?.t(),
        }
    }
}

fn cpu_linear(x: &Tensor, w: Matrix, e: Epilogue) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, w_k) = w.dims()?;
    let bias = e.bias.map(Tensor::contiguous).transpose()?;
    let residual = e.residual.map(Tensor::contiguous).transpose()?;
    let bias_ok = bias.as_ref().is_none_or(|b| b.dims() == [n]);
    let residual_ok = residual.as_ref().is_none_or(|r| r.dims() == [m, n]);
    if w_k != k || !bias_ok || !residual_ok {
        bail!(
            "linear: x {:?}, w {:?}, bias {:?}, residual {:?}",
            x.dims(),
            (n, w_k),
            bias.as_ref().map(Tensor::dims),
            residual.as_ref().map(Tensor::dims)
        );
    }
    let bias = bias.as_ref().map(CpuSlice::new).transpose()?;
    let residual = residual.as_ref().map(CpuSlice::new).transpose()?;
    let ep = cpu::Epilogue {
        bias: bias.as_ref().map(CpuSlice::get).transpose()?,
        gelu: e.gelu,
        residual: residual.as_ref().map(CpuSlice::get).transpose()?,
    };
    // The tall kernel: every row alike whatever the batch (see `vv_kernels::cpu::tall_matmul`).
    if let Matrix::Tall(t) = w {
        let x = x.contiguous()?;
        let xs = CpuSlice::new(&x)?;
        if let Some(out) = cpu::tall_matmul(xs.get()?, t, m, &ep) {
            return Tensor::from_vec(out, (m, n), &Device::Cpu);
        }
    }
    let per_stream = e.stream_rows.filter(|&r| r > 0 && m % r == 0).unwrap_or(m);
    let out = if per_stream <= cpu::SKINNY_MAX_ROWS {
        cpu::epilogue(&w.skinny(x)?, true, m, n, &ep)
    } else {
        let wt = w.transposed()?;
        let mut y = Vec::with_capacity(m * n);
        for start in (0..m).step_by(per_stream) {
            let part = x.narrow(0, start, per_stream)?.matmul(&wt)?;
            y.extend_from_slice(CpuSlice::new(&part)?.get()?);
        }
        cpu::epilogue(&y, false, m, n, &ep)
    };
    Tensor::from_vec(out, (m, n), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::Packing;
    use candle_core::DType;
    use vv_kernels::cpu::WeightFormat;

    /// The candle-op path, as used on GPUs (f64 forces it on the CPU).
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, gelu: bool) -> Tensor {
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let (b, r) = (f64(b), f64(r));
        let e = Epilogue {
            bias: Some(&b),
            gelu,
            residual: Some(&r),
            stream_rows: None,
        };
        linear(&f64(x), &f64(w).into(), e)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    }

    /// The f32 values a weight computes with (a packed weight's unpacked values).
    fn values(w: &LinearWeight) -> Tensor {
        match w {
            LinearWeight::Dense(t) => t.clone(),
            LinearWeight::Packed(p) => {
                Tensor::from_vec(p.unpack(), p.dims(), &Device::Cpu).unwrap()
            }
            LinearWeight::Tall(t) => Tensor::from_vec(t.unpack(), t.dims(), &Device::Cpu).unwrap(),
        }
    }

    /// Dense, bf16 and int8 forms of `w`.
    fn forms(w: &Tensor) -> Vec<LinearWeight> {
        let mut forms = vec![LinearWeight::Dense(w.clone())];
        for format in [WeightFormat::Bf16, WeightFormat::Int8] {
            let packed = Packing::every_matrix(format).weight(w.clone(), 1).unwrap();
            assert_eq!(packed.format(), Some(format));
            forms.push(packed);
        }
        forms
    }

    /// Dense and packed weights, skinny and tall inputs (one GEMM per stream on unpacked
    /// weights), every epilogue: the fused result equals candle's ops on the values the weight
    /// holds.
    #[test]
    fn cpu_kernels_match_candle_ops_for_skinny_and_tall_inputs() {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 40, 24),
            (6, 33, 70),
            (16, 64, 130),
            (17, 20, 9),
            (300, 48, 64),
        ] {
            let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
            let stream_rows = [None, Some(1), Some(m)];
            let w = Tensor::randn(0f32, 0.2, (n, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1., n, &dev).unwrap();
            let r = Tensor::randn(0f32, 1., (m, n), &dev).unwrap();
            for w in forms(&w) {
                for (gelu, stream_rows) in [false, true].into_iter().zip(stream_rows) {
                    let e = Epilogue {
                        bias: Some(&b),
                        gelu,
                        residual: Some(&r),
                        stream_rows,
                    };
                    let got = linear(&x, &w, e).unwrap();
                    let want = reference(&x, &values(&w), &b, &r, gelu);
                    let err = crate::parity::max_abs_diff(&got, &want).unwrap();
                    assert!(
                        err < 1e-4,
                        "{:?}: m {m} k {k} n {n} gelu {gelu}: max abs error {err}",
                        w.format()
                    );
                }
            }
        }
    }

    /// The tall kernel's weight (where this CPU runs it), skinny and tall inputs, every
    /// epilogue: candle's ops on the values it holds and on the activations rounded to bf16.
    #[test]
    fn tall_weights_match_candle_ops_on_bf16_activations() {
        let dev = Device::Cpu;
        for (m, k, n) in [(1, 40, 24), (17, 64, 33), (300, 96, 64)] {
            let w = Tensor::randn(0f32, 0.2, (n, k), &dev).unwrap();
            let tall = Packing::every_matrix(WeightFormat::Bf16)
                .weight(w, vv_kernels::cpu::SKINNY_MAX_ROWS + 1)
                .unwrap();
            if !matches!(tall, LinearWeight::Tall(_)) {
                eprintln!("no tall kernel on this CPU: nothing to check");
                return;
            }
            let values = values(&tall);
            let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
            let rounded = x
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let b = Tensor::randn(0f32, 1., n, &dev).unwrap();
            let r = Tensor::randn(0f32, 1., (m, n), &dev).unwrap();
            for gelu in [false, true] {
                let e = Epilogue {
                    bias: Some(&b),
                    gelu,
                    residual: Some(&r),
                    stream_rows: Some(m),
                };
                let got = linear(&x, &tall, e).unwrap();
                let want = reference(&rounded, &values, &b, &r, gelu);
                let err = crate::parity::max_abs_diff(&got, &want).unwrap();
                assert!(
                    err < 1e-4,
                    "m {m} k {k} n {n} gelu {gelu}: max abs error {err}"
                );
            }
        }
    }

    #[test]
    fn packed_weights_refuse_other_activations_with_an_error() {
        let w = Tensor::randn(0f32, 1., (8, 4), &Device::Cpu).unwrap();
        let packed = Packing::every_matrix(WeightFormat::Int8)
            .weight(w, 1)
            .unwrap();
        let x = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
        let err = linear(&x, &packed, Epilogue::default()).unwrap_err();
        assert!(err.to_string().contains("packed weights"), "{err}");
    }
}

#[cfg(test)]
mod invariance {
    use super::*;
    use crate::linear::Packing;
    use vv_kernels::cpu::{WeightFormat, SKINNY_MAX_ROWS};

    /// A stream's rows come out bit for bit as they do alone, whatever shares the batch: the
    /// skinny kernel for any row count when each stream has few rows, one GEMM per stream
    /// when they have many; with dense, bf16 and int8 weights alike.
    #[test]
    fn packed_streams_equal_their_rows_alone_exactly() {
        let dev = Device::Cpu;
        for (per, streams, k, n) in [(1, 40, 96, 70), (5, 7, 64, 33), (40, 3, 48, 64)] {
            let dense = Tensor::randn(0f32, 0.2, (n, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1., n, &dev).unwrap();
            let x = Tensor::randn(0f32, 1., (per * streams, k), &dev).unwrap();
            let e = |rows| Epilogue {
                bias: Some(&b),
                gelu: true,
                stream_rows: Some(rows),
                ..Epilogue::default()
            };
            let mut packed = [WeightFormat::Bf16, WeightFormat::Int8]
                .map(|f| Packing::every_matrix(f).weight(dense.clone(), 1).unwrap())
                .to_vec();
            // The tall kernel's form, where this CPU runs it.
            let tall = Packing::every_matrix(WeightFormat::Bf16)
                .weight(dense.clone(), SKINNY_MAX_ROWS + 1)
                .unwrap();
            if matches!(tall, LinearWeight::Tall(_)) {
                packed.push(tall);
            }
            for w in [LinearWeight::Dense(dense.clone())].iter().chain(&packed) {
                let all = linear(&x, w, e(per)).unwrap();
                for s in 0..streams {
                    let alone = linear(&x.narrow(0, s * per, per).unwrap(), w, e(per)).unwrap();
                    let part = all.narrow(0, s * per, per).unwrap();
                    let diff = crate::parity::max_abs_diff(&part, &alone).unwrap();
                    assert_eq!(
                        diff,
                        0.0,
                        "{:?}: {per} rows x {streams} streams: stream {s}",
                        w.format()
                    );
                }
            }
        }
    }
}
