//! Resolution of a device request against the hardware: `auto` picks the best available
//! backend (CUDA device 0, then Metal, then CPU) and falls back with a warning; an explicit
//! request that cannot be honoured is an error, never a silent fallback.

use crate::backend::{device_label, Backend};
use crate::error::DeviceError;
use crate::guard::catch_panic;
use crate::probe::DeviceProbe;
use crate::request::DeviceRequest;
use crate::survey::{log_statuses, survey, BackendStatus};
use candle_core::Device;
use serde::Serialize;
use std::fmt;
use tracing::{info, warn};

/// The device chosen for inference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedDevice {
    /// Its backend.
    pub backend: Backend,
    /// Its ordinal within the backend (0 for Metal and CPU).
    pub ordinal: usize,
    /// Its name, when the probe knows it.
    pub name: Option<String>,
}

impl ResolvedDevice {
    /// Device string in request form: `cuda:N`, `mps` or `cpu`.
    pub fn label(&self) -> String {
        device_label(self.backend, self.ordinal)
    }

    /// Opens the candle device. Never panics: candle's constructors panic when a driver library
    /// or device is missing, which is caught and returned as [`DeviceError::Init`].
    pub fn to_candle_device(&self) -> Result<Device, DeviceError> {
        let device = self.label();
        match self.backend {
            Backend::Cpu => Ok(Device::Cpu),
            Backend::Cuda if !Backend::Cuda.compiled_into_this_build() => {
                Err(DeviceError::NotCompiled {
                    device,
                    feature: "cuda",
                })
            }
            Backend::Metal if !Backend::Metal.compiled_into_this_build() => {
                Err(DeviceError::NotCompiled {
                    device,
                    feature: "metal",
                })
            }
            Backend::Cuda => open(device, || Device::new_cuda(self.ordinal).map(untracked)),
            Backend::Metal => open(device, || Device::new_metal(self.ordinal)),
        }
    }
}

/// Turns off cudarc's per-allocation event tracking on a CUDA device. candle runs every op of a
/// device on one stream, where the events synchronise nothing (cudarc only waits on them in
/// multi-stream mode) but still cost two event creations and destructions per tensor, a large
/// share of an op's launch overhead in the launch-bound decode loop.
fn untracked(device: Device) -> Device {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = &device {
        // SAFETY: no tensor of this device is used on another stream (candle has no API for
        // that), so there is no cross-stream synchronisation for the events to provide.
        unsafe { cuda.disable_event_tracking() };
    }
    device
}

fn open(
    device: String,
    constructor: impl FnOnce() -> candle_core::Result<Device>,
) -> Result<Device, DeviceError> {
    match catch_panic(constructor) {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => Err(DeviceError::Init {
            device,
            reason: e.to_string(),
        }),
        Err(reason) => Err(DeviceError::Init { device, reason }),
    }
}

impl fmt::Display for ResolvedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The outcome of resolving a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// What was asked for.
    pub request: DeviceRequest,
    /// What was chosen.
    pub device: ResolvedDevice,
    /// Why it was chosen.
    pub reason: String,
    /// Fallbacks taken by `auto` (compiled-in backends that were skipped, and why).
    pub warnings: Vec<String>,
    /// Availability of every backend, in priority order.
    pub backends: Vec<BackendStatus>,
}

/// The best available device: CUDA device 0, else Metal, else the CPU, considering only
/// backends compiled into the build. Deterministic for a given probe; logs nothing.
pub fn detect_best_device(probe: &dyn DeviceProbe) -> ResolvedDevice {
    choose_auto(&survey(probe)).0
}

/// Resolves `request` against the probe and logs every backend's availability, the choice and
/// each fallback.
pub fn resolve_device(
    request: DeviceRequest,
    probe: &dyn DeviceProbe,
) -> Result<Resolution, DeviceError> {
    let backends = survey(probe);
    log_statuses(&backends);
    let resolution = resolve_surveyed(request, backends);
    log_outcome(request, &resolution);
    resolution
}

/// Resolves `request` against an already gathered survey, without logging.
pub fn resolve_surveyed(
    request: DeviceRequest,
    backends: Vec<BackendStatus>,
) -> Result<Resolution, DeviceError> {
    let (device, reason, warnings) = match request {
        DeviceRequest::Auto => {
            let (device, warnings) = choose_auto(&backends);
            let reason = auto_reason(device.backend);
            (device, reason, warnings)
        }
        DeviceRequest::Cpu => (cpu_device(&backends), explicit_reason(request), Vec::new()),
        DeviceRequest::Cuda(index) => (
            explicit_device(request, Backend::Cuda, index, &backends)?,
            explicit_reason(request),
            Vec::new(),
        ),
        DeviceRequest::Metal => (
            explicit_device(request, Backend::Metal, 0, &backends)?,
            explicit_reason(request),
            Vec::new(),
        ),
    };
    Ok(Resolution {
        request,
        device,
        reason,
        warnings,
        backends,
    })
}

/// Logs the choice (info), each fallback (warn) or the error (warn).
pub(crate) fn log_outcome(request: DeviceRequest, outcome: &Result<Resolution, DeviceError>) {
    match outcome {
        Ok(resolution) => {
            for warning in &resolution.warnings {
                warn!(%request, "{warning}");
            }
            info!(
                %request,
                backend = %resolution.device.backend,
                device = %resolution.device,
                name = resolution.device.name.as_deref().unwrap_or("unknown"),
                reason = %resolution.reason,
                "device selected"
            );
        }
        Err(error) => {
            warn!(%request, code = error.code(), "device request cannot be honoured: {error}")
        }
    }
}

fn status(backends: &[BackendStatus], backend: Backend) -> Option<&BackendStatus> {
    backends.iter().find(|s| s.backend == backend)
}

fn device_at(backends: &[BackendStatus], backend: Backend, ordinal: usize) -> ResolvedDevice {
    let name = status(backends, backend)
        .and_then(|s| s.devices.get(ordinal))
        .and_then(|d| d.name.clone());
    ResolvedDevice {
        backend,
        ordinal,
        name,
    }
}

fn cpu_device(backends: &[BackendStatus]) -> ResolvedDevice {
    device_at(backends, Backend::Cpu, 0)
}

/// The first present backend in priority order, and a warning per compiled-in backend skipped.
fn choose_auto(backends: &[BackendStatus]) -> (ResolvedDevice, Vec<String>) {
    let mut skipped = Vec::new();
    for backend in Backend::PRIORITY {
        match status(backends, backend) {
            Some(s) if s.present => {
                let device = device_at(backends, backend, 0);
                let warnings = skipped
                    .into_iter()
                    .map(|(b, reason): (Backend, String)| {
                        format!(
                            "auto: {b} is compiled in but unavailable ({reason}); falling back to {}",
                            device.label()
                        )
                    })
                    .collect();
                return (device, warnings);
            }
            Some(s) if s.compiled_in => skipped.push((
                backend,
                s.unavailable_reason
                    .clone()
                    .unwrap_or_else(|| "unavailable".to_string()),
            )),
            _ => {}
        }
    }
    // The CPU is always present; an empty survey still resolves to it.
    (cpu_device(backends), Vec::new())
}

fn auto_reason(backend: Backend) -> String {
    let why = match backend {
        Backend::Cuda => "CUDA device 0 is the best available device",
        Backend::Metal => "Metal is the best available device (no usable CUDA device)",
        Backend::Cpu => "no GPU backend is usable, so the CPU is used",
    };
    format!("auto: {why} (priority cuda > mps > cpu)")
}

fn explicit_reason(request: DeviceRequest) -> String {
    format!("requested explicitly as {request}")
}

fn explicit_device(
    request: DeviceRequest,
    backend: Backend,
    index: usize,
    backends: &[BackendStatus],
) -> Result<ResolvedDevice, DeviceError> {
    let device = request.to_string();
    let s = status(backends, backend).filter(|s| s.compiled_in);
    let Some(s) = s else {
        return Err(DeviceError::NotCompiled {
            device,
            feature: backend.cargo_feature().unwrap_or("cpu"),
        });
    };
    if !s.present {
        let reason = s
            .unavailable_reason
            .clone()
            .unwrap_or_else(|| "no device found".to_string());
        return Err(DeviceError::Unavailable { device, reason });
    }
    if index >= s.devices.len() {
        return Err(DeviceError::OutOfRange {
            device,
            index,
            count: s.devices.len(),
        });
    }
    Ok(device_at(backends, backend, index))
}
