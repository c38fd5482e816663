//! `--quantize` (`TTS_QUANTIZE`): the format the model's large matrices are packed in at load on
//! the CPU (see [`Packing`] for which matrices and `docs/quantization.md` for the accuracy), and
//! how `auto` decides.
//!
//! Quantization is weight-only and CPU-only: it applies with f32 compute on the CPU, where a
//! frame's time is spent reading weights from memory. `auto` (the default) packs to int8 where
//! the CPU kernels in use are SIMD kernels (x86-64 with AVX-512F or AVX2+FMA, arm64 with NEON)
//! and packs nothing elsewhere (GPUs, other dtypes, the portable kernels): int8 (16-value block
//! scales, the attention projections, connector and classifier in bf16) is the fastest format
//! whose errors on the golden fixture stay within the CUDA bf16 path's in every component and
//! end to end; bf16 is closer to f32 and slower. An explicit `int8` or `bf16` off the CPU or
//! with another dtype is a `quantize_unsupported` error.

use std::fmt;
use std::str::FromStr;

use candle_core::DType;
use serde::Serialize;
use vv_device::Backend;
pub use vv_kernels::cpu::KernelReport;
use vv_kernels::cpu::WeightFormat;

use crate::error::{ModelError, Result};
use crate::linear::Packing;

/// The valid `--quantize` forms, listed in parse errors.
pub const VALID_QUANTIZE_FORMS: &str = "auto, none, bf16, int8";

/// Requested weight quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// int8 on a CPU with SIMD kernels for packed weights (f32 compute), none elsewhere.
    #[default]
    Auto,
    /// Every weight in the compute dtype.
    None,
    /// Large matrices in bf16 (CPU, f32 compute only).
    Bf16,
    /// Large matrices in int8 with one scale per 16 weights of a row, the attention projections,
    /// connector and EOS classifier in bf16 (CPU, f32 compute only).
    Int8,
}

/// What a [`Quantize`] request resolves to on a device, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeChoice {
    /// The request.
    pub requested: Quantize,
    /// What the model is loaded with.
    pub packing: Packing,
    /// Why, in words.
    pub reason: String,
}

impl Quantize {
    /// Every form, in the order they are listed.
    pub const ALL: &'static [Self] = &[Self::Auto, Self::None, Self::Bf16, Self::Int8];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::None => "none",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }

    /// The format an explicit request names (`None` for `auto` and `none`).
    pub fn format(self) -> Option<WeightFormat> {
        match self {
            Self::Bf16 => Some(WeightFormat::Bf16),
            Self::Int8 => Some(WeightFormat::Int8),
            Self::Auto | Self::None => None,
        }
    }

    /// What the model loads with on a device of `backend` computing in `dtype`; an explicit
    /// format where it does not apply is a `quantize_unsupported` error.
    pub fn resolve(self, backend: Backend, dtype: DType) -> Result<QuantizeChoice> {
        let choice = |packing, reason: &str| QuantizeChoice {
            requested: self,
            packing,
            reason: reason.to_string(),
        };
        let format = match (self, self.format()) {
            (_, Some(format)) => format,
            (Self::None, _) => return Ok(choice(Packing::NONE, "requested")),
            _ if backend != Backend::Cpu => {
                return Ok(choice(Packing::NONE, "auto: not on the CPU"))
            }
            _ if dtype != DType::F32 => {
                return Ok(choice(Packing::NONE, "auto: the compute dtype is not f32"))
            }
            _ if !fast_cpu_kernels() => {
                let reason = "auto: this CPU has no SIMD kernels for packed weights";
                return Ok(choice(Packing::NONE, reason));
            }
            _ => {
                let reason = "auto: int8, the fastest format within the CUDA bf16 path's errors, on a CPU with SIMD kernels";
                return Ok(choice(Packing::large(WeightFormat::Int8), reason));
            }
        };
        let packing = Packing::large(format);
        check_target(packing, backend, dtype)?;
        Ok(choice(packing, "requested"))
    }
}

/// The CPU kernels in use: the body (`VV_CPU_KERNELS` or the CPU's features), the kernel of
/// each weight format, and the CPU features that matter to them.
pub fn cpu_kernels() -> KernelReport {
    vv_kernels::cpu::kernel_names()
}

/// Whether the CPU kernels in use are SIMD kernels (AVX-512F, AVX2+FMA or NEON, chosen by the
/// CPU's features and `VV_CPU_KERNELS`), not the portable ones.
pub fn fast_cpu_kernels() -> bool {
    vv_kernels::cpu::simd_kernels()
}

/// Refuses packed weights anywhere but f32 compute on the CPU.
pub(crate) fn check_target(packing: Packing, backend: Backend, dtype: DType) -> Result<()> {
    let on_cpu = backend == Backend::Cpu;
    if packing.format().is_none() || (on_cpu && dtype == DType::F32) {
        return Ok(());
    }
    let place = if on_cpu {
        format!("{dtype:?} compute on the CPU")
    } else {
        format!("the {backend} device")
    };
    Err(ModelError::QuantizeUnsupported(format!(
        "{} weights need f32 compute on the CPU, not {place}; use --quantize none (or auto)",
        packing.name()
    )))
}

impl fmt::Display for Quantize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantize {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|q| q.as_str() == wanted)
            .ok_or_else(|| {
                ModelError::InvalidInput(format!(
                    "invalid quantize {s:?}: valid forms are {VALID_QUANTIZE_FORMS}"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_names_the_valid_ones() {
        for q in Quantize::ALL {
            assert_eq!(q.as_str().parse::<Quantize>().unwrap(), *q);
        }
        assert_eq!(" INT8 ".parse::<Quantize>().unwrap(), Quantize::Int8);
        let err = "int4".parse::<Quantize>().unwrap_err();
        assert!(err.to_string().contains(VALID_QUANTIZE_FORMS), "{err}");
        assert_eq!(Quantize::default(), Quantize::Auto);
    }

    #[test]
    fn explicit_formats_pack_large_matrices_on_the_cpu_in_f32() {
        let int8 = Quantize::Int8.resolve(Backend::Cpu, DType::F32).unwrap();
        assert_eq!(int8.packing, Packing::large(WeightFormat::Int8));
        let bf16 = Quantize::Bf16.resolve(Backend::Cpu, DType::F32).unwrap();
        assert_eq!(bf16.packing, Packing::large(WeightFormat::Bf16));
        let none = Quantize::None.resolve(Backend::Cpu, DType::F32).unwrap();
        assert_eq!(none.packing, Packing::NONE);
    }

    #[test]
    fn explicit_formats_on_a_gpu_or_another_dtype_are_a_typed_error() {
        for q in [Quantize::Int8, Quantize::Bf16] {
            for backend in [Backend::Cuda, Backend::Metal] {
                for dtype in [DType::F32, DType::BF16] {
                    let err = q.resolve(backend, dtype).unwrap_err();
                    assert_eq!(err.code(), "quantize_unsupported", "{err}");
                    assert!(err.to_string().contains(backend.as_str()), "{err}");
                }
            }
            let err = q.resolve(Backend::Cpu, DType::BF16).unwrap_err();
            assert_eq!(err.code(), "quantize_unsupported", "{err}");
        }
        // Where nothing is packed, any target is fine.
        check_target(Packing::NONE, Backend::Cuda, DType::F16).unwrap();
        let none = Quantize::None.resolve(Backend::Cuda, DType::BF16).unwrap();
        assert_eq!(none.packing, Packing::NONE);
    }

    #[test]
    fn auto_is_int8_on_a_cpu_with_simd_kernels_and_none_elsewhere() {
        let f32 = Quantize::Auto.resolve(Backend::Cpu, DType::F32).unwrap();
        let want = if fast_cpu_kernels() {
            Packing::large(WeightFormat::Int8)
        } else {
            Packing::NONE
        };
        assert_eq!(f32.packing, want, "{}", f32.reason);
        for (backend, dtype) in [
            (Backend::Cpu, DType::BF16),
            (Backend::Cuda, DType::BF16),
            (Backend::Cuda, DType::F32),
            (Backend::Metal, DType::F32),
        ] {
            let choice = Quantize::Auto.resolve(backend, dtype).unwrap();
            assert_eq!(choice.packing, Packing::NONE, "{backend} {dtype:?}");
        }
    }
}
