//! The device part of the model information shown by `/api/info` and `devices`; the engine
//! adds model fields around it.

use crate::dtype::{serialize_dtype, DTypeChoice};
use crate::request::{DTypeRequest, DeviceRequest};
use crate::resolve::{Resolution, ResolvedDevice};
use crate::survey::BackendStatus;
use candle_core::DType;
use serde::Serialize;

/// Device, dtype and the reasons for both. An open struct: later layers add fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The device request in force.
    pub device_request: DeviceRequest,
    /// The device chosen.
    pub device: ResolvedDevice,
    /// Why that device.
    pub device_reason: String,
    /// The dtype request in force.
    pub dtype_request: DTypeRequest,
    /// The compute dtype chosen.
    #[serde(serialize_with = "serialize_dtype")]
    pub dtype: DType,
    /// Why that dtype.
    pub dtype_reason: String,
    /// Availability of every backend at resolution time.
    pub backends: Vec<BackendStatus>,
    /// Fallbacks taken while resolving.
    pub warnings: Vec<String>,
}

impl ModelInfo {
    /// Records a resolution and the dtype chosen for it.
    pub fn new(resolution: &Resolution, dtype: &DTypeChoice) -> Self {
        Self {
            device_request: resolution.request,
            device: resolution.device.clone(),
            device_reason: resolution.reason.clone(),
            dtype_request: dtype.requested,
            dtype: dtype.dtype,
            dtype_reason: dtype.reason.clone(),
            backends: resolution.backends.clone(),
            warnings: resolution.warnings.clone(),
        }
    }
}
