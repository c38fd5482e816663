//! The dtype policy (`TTS_DTYPE`): CUDA uses the configured dtype unchanged (`auto` means
//! bf16); Metal uses f32 unless the requested half type passes the probe's self-test; the CPU
//! always uses f32.

use crate::backend::Backend;
use crate::probe::DeviceProbe;
use crate::request::DTypeRequest;
use candle_core::DType;
use serde::{Serialize, Serializer};
use tracing::{info, warn};

/// The compute dtype chosen for a backend, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DTypeChoice {
    /// What was asked for.
    pub requested: DTypeRequest,
    /// What will be used.
    #[serde(serialize_with = "serialize_dtype")]
    pub dtype: DType,
    /// Why.
    pub reason: String,
}

/// Serializes a candle dtype by its short name (`bf16`, `f16`, `f32`).
pub fn serialize_dtype<S: Serializer>(dtype: &DType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(dtype.as_str())
}

/// The dtype that `request` names, if it names one.
pub fn requested_dtype(request: DTypeRequest) -> Option<DType> {
    match request {
        DTypeRequest::Auto => None,
        DTypeRequest::Bf16 => Some(DType::BF16),
        DTypeRequest::F16 => Some(DType::F16),
        DTypeRequest::F32 => Some(DType::F32),
    }
}

/// Applies the dtype policy for `backend` and logs the choice and its reason. On Metal the
/// half-precision check through the probe is explicit and logged.
pub fn select_dtype(
    backend: Backend,
    request: DTypeRequest,
    probe: &dyn DeviceProbe,
) -> DTypeChoice {
    let (dtype, reason) = match (backend, requested_dtype(request)) {
        (Backend::Cuda, None) => (DType::BF16, "auto on CUDA means bf16".to_string()),
        (Backend::Cuda, Some(dtype)) => (
            dtype,
            format!("{} requested; CUDA uses the configured dtype unchanged", dtype.as_str()),
        ),
        (Backend::Metal, None) => (
            DType::F32,
            "auto on Metal means f32 (request bf16 or f16 to use half precision where the device supports it)"
                .to_string(),
        ),
        (Backend::Metal, Some(DType::F32)) => (DType::F32, "f32 requested".to_string()),
        (Backend::Metal, Some(half)) => metal_half(half, probe),
        (Backend::Cpu, None) => (
            DType::F32,
            "auto on the CPU means f32, candle's fastest CPU path".to_string(),
        ),
        (Backend::Cpu, Some(DType::F32)) => (DType::F32, "f32 requested".to_string()),
        (Backend::Cpu, Some(half)) => (
            DType::F32,
            format!(
                "{} requested, but the CPU always uses f32: candle's CPU kernels for half types are \
                 slower than f32 and this model is validated in f32 on the CPU",
                half.as_str()
            ),
        ),
    };
    info!(%backend, requested = %request, dtype = %dtype.as_str(), %reason, "compute dtype selected");
    DTypeChoice {
        requested: request,
        dtype,
        reason,
    }
}

fn metal_half(half: DType, probe: &dyn DeviceProbe) -> (DType, String) {
    let name = half.as_str();
    info!(dtype = %name, "checking half-precision support on Metal (self-test)");
    match probe.metal_supports(half) {
        Ok(()) => {
            info!(dtype = %name, "Metal half-precision self-test passed");
            (
                half,
                format!("{name} requested and the Metal half-precision self-test passed"),
            )
        }
        Err(why) => {
            warn!(dtype = %name, reason = %why, "Metal half-precision self-test failed; using f32");
            (
                DType::F32,
                format!(
                    "{name} requested but not supported on this Metal device ({why}); using f32"
                ),
            )
        }
    }
}
