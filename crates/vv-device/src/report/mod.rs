//! What `vibevoice-rt devices` prints: every backend (compiled in, present, devices, memory),
//! the request in force, what it resolves to and the dtype with its reason.
//!
//! [`DevicesReport::collect`] always returns a report, also when the request cannot be
//! honoured: the backend table is still filled, the resolution fields are `None`, and the
//! error is in [`DevicesReport::error`] (and in the serialized `error` field as code and
//! message), so the command can print the table and then exit non-zero with the error.

mod table;

use crate::dtype::{select_dtype, DTypeChoice};
use crate::error::DeviceError;
use crate::ops::BackendOps;
use crate::probe::DeviceProbe;
use crate::request::{DTypeRequest, DeviceRequest};
use crate::resolve::{log_outcome, resolve_surveyed, ResolvedDevice};
use crate::survey::{log_statuses, survey, BackendStatus};
use crate::Backend;
use candle_core::Device;
use serde::Serialize;

/// A device error as code and message, for JSON output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedError {
    /// Stable machine label ([`DeviceError::code`]).
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

/// The devices report; serializes to the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DevicesReport {
    /// The device request in force.
    pub request: DeviceRequest,
    /// The dtype request in force.
    pub dtype_request: DTypeRequest,
    /// Every backend in priority order, with its devices and their memory.
    pub backends: Vec<BackendStatus>,
    /// The device the request resolves to (`None` when it cannot be honoured).
    pub resolved: Option<ResolvedDevice>,
    /// Why that device.
    pub reason: Option<String>,
    /// The dtype policy's choice for the resolved backend.
    pub dtype: Option<DTypeChoice>,
    /// Fallbacks taken by `auto`.
    pub warnings: Vec<String>,
    /// Why the request cannot be honoured.
    pub error: Option<ReportedError>,
    #[serde(skip)]
    failure: Option<DeviceError>,
}

impl DevicesReport {
    /// Surveys the backends through `probe`, resolves `request`, applies the dtype policy and
    /// logs all of it. GPU memory comes from the probe (which reads the driver without creating
    /// a candle device); the CPU's memory is read live through `ops` (process RSS included).
    pub fn collect(
        request: DeviceRequest,
        dtype: DTypeRequest,
        probe: &dyn DeviceProbe,
        ops: &dyn BackendOps,
    ) -> Self {
        let mut backends = survey(probe);
        for status in backends.iter_mut().filter(|s| s.backend == Backend::Cpu) {
            for device in &mut status.devices {
                device.memory = ops.memory_stats(&Device::Cpu);
            }
        }
        log_statuses(&backends);
        let outcome = resolve_surveyed(request, backends.clone());
        log_outcome(request, &outcome);
        match outcome {
            Ok(resolution) => Self {
                request,
                dtype_request: dtype,
                backends,
                dtype: Some(select_dtype(resolution.device.backend, dtype, probe)),
                resolved: Some(resolution.device),
                reason: Some(resolution.reason),
                warnings: resolution.warnings,
                error: None,
                failure: None,
            },
            Err(failure) => Self {
                request,
                dtype_request: dtype,
                backends,
                resolved: None,
                reason: None,
                dtype: None,
                warnings: Vec::new(),
                error: Some(ReportedError {
                    code: failure.code(),
                    message: failure.to_string(),
                }),
                failure: Some(failure),
            },
        }
    }

    /// Why the request cannot be honoured, if it cannot.
    pub fn error(&self) -> Option<&DeviceError> {
        self.failure.as_ref()
    }

    /// The report as a human-readable table.
    pub fn render_table(&self) -> String {
        table::render(self)
    }
}
