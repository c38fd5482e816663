//! Parsing of device requests (`TTS_DEVICE`) and dtype requests (`TTS_DTYPE`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The valid device forms, listed in every parse error.
pub const VALID_DEVICE_FORMS: &str = "auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps, metal";

/// What the user asked for; resolved against the hardware by `resolve_device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceRequest {
    /// Pick the best available backend: CUDA device 0, then Metal, then CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device with this ordinal (`cuda` means `cuda:0`).
    Cuda(usize),
    /// Apple Silicon GPU through Metal (`mps`, alias `metal`).
    Metal,
}

/// A device string that is not one of the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid device {input:?}: valid forms are {VALID_DEVICE_FORMS}; \
     examples: TTS_DEVICE=auto, TTS_DEVICE=cuda:0, TTS_DEVICE=mps, TTS_DEVICE=cpu; \
     use \"auto\" to pick the best available device automatically"
)]
pub struct InvalidDeviceRequest {
    /// The rejected input, as given.
    pub input: String,
}

impl InvalidDeviceRequest {
    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        "invalid_device"
    }
}

impl FromStr for DeviceRequest {
    type Err = InvalidDeviceRequest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        let err = || InvalidDeviceRequest {
            input: s.to_string(),
        };
        match norm.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "mps" | "metal" => Ok(Self::Metal),
            _ => {
                let idx = norm.strip_prefix("cuda:").ok_or_else(err)?;
                if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                idx.parse::<usize>().map(Self::Cuda).map_err(|_| err())
            }
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Metal => f.write_str("mps"),
        }
    }
}

impl Serialize for DeviceRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The valid dtype forms, listed in every parse error.
pub const VALID_DTYPE_FORMS: &str = "auto, bf16, f16, f32";

/// Requested compute dtype (`TTS_DTYPE`); the policy in `dtype` decides what is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DTypeRequest {
    /// bf16 on CUDA, f32 elsewhere.
    #[default]
    Auto,
    /// bfloat16.
    Bf16,
    /// float16.
    F16,
    /// float32.
    F32,
}

/// A dtype string that is not one of the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dtype {input:?}: valid forms are {VALID_DTYPE_FORMS}; use \"auto\" for the device's best dtype")]
pub struct InvalidDTypeRequest {
    /// The rejected input, as given.
    pub input: String,
}

impl InvalidDTypeRequest {
    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        "invalid_dtype"
    }
}

impl FromStr for DTypeRequest {
    type Err = InvalidDTypeRequest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            _ => Err(InvalidDTypeRequest {
                input: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for DTypeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
            Self::F32 => "f32",
        })
    }
}

impl Serialize for DTypeRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DTypeRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_valid_form_with_whitespace_and_case() {
        for (s, want) in [
            ("auto", DeviceRequest::Auto),
            (" CPU ", DeviceRequest::Cpu),
            ("cuda", DeviceRequest::Cuda(0)),
            ("Cuda:3", DeviceRequest::Cuda(3)),
            ("mps", DeviceRequest::Metal),
            ("\tMETAL\n", DeviceRequest::Metal),
        ] {
            assert_eq!(s.parse::<DeviceRequest>().unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn rejects_invalid_forms_with_help() {
        for s in [
            "", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:+1", "cuda 0", "rocm",
        ] {
            let e = s.parse::<DeviceRequest>().unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(VALID_DEVICE_FORMS), "{msg}");
            assert!(msg.contains("cuda:0") && msg.contains("\"auto\""), "{msg}");
        }
    }

    #[test]
    fn display_round_trips() {
        for r in [
            DeviceRequest::Auto,
            DeviceRequest::Cpu,
            DeviceRequest::Cuda(7),
            DeviceRequest::Metal,
        ] {
            assert_eq!(r.to_string().parse::<DeviceRequest>().unwrap(), r);
        }
    }

    #[test]
    fn dtype_forms() {
        assert_eq!(" BF16".parse::<DTypeRequest>().unwrap(), DTypeRequest::Bf16);
        assert_eq!("f32".parse::<DTypeRequest>().unwrap(), DTypeRequest::F32);
        assert!("int8".parse::<DTypeRequest>().is_err());
    }
}
