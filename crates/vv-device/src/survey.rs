//! The availability of every backend (compiled in, present, devices with name and memory),
//! gathered from a probe and logged.

use crate::backend::{device_label, Backend};
use crate::human::format_optional_bytes;
use crate::ops::MemoryStats;
use crate::probe::DeviceProbe;
use serde::Serialize;
use tracing::info;

/// One device of a backend as the probe sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSummary {
    /// Device string (`cuda:N`, `mps`, `cpu`).
    pub device: String,
    /// Device name, when known.
    pub name: Option<String>,
    /// CUDA compute capability as `major.minor`.
    pub compute_capability: Option<String>,
    /// Memory as the probe reads it (fields it cannot read are `None`).
    pub memory: MemoryStats,
}

impl DeviceSummary {
    /// One line: device, name and memory.
    pub fn describe(&self) -> String {
        let mut text = self.device.clone();
        if let Some(name) = &self.name {
            text.push_str(&format!(" {name}"));
        }
        if let Some(cc) = &self.compute_capability {
            text.push_str(&format!(" (compute {cc})"));
        }
        text.push_str(&format!(
            ", {} total, {} free",
            format_optional_bytes(self.memory.total_bytes),
            format_optional_bytes(self.memory.free_bytes)
        ));
        text
    }
}

/// Availability of one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStatus {
    /// The backend.
    pub backend: Backend,
    /// Whether this build contains the backend.
    pub compiled_in: bool,
    /// Whether at least one device of the backend can be used.
    pub present: bool,
    /// The usable devices (empty when not present).
    pub devices: Vec<DeviceSummary>,
    /// Why the backend cannot be used (`None` when present).
    pub unavailable_reason: Option<String>,
}

impl BackendStatus {
    fn present(backend: Backend, devices: Vec<DeviceSummary>) -> Self {
        Self {
            backend,
            compiled_in: true,
            present: true,
            devices,
            unavailable_reason: None,
        }
    }

    fn absent(backend: Backend, compiled_in: bool, reason: String) -> Self {
        Self {
            backend,
            compiled_in,
            present: false,
            devices: Vec::new(),
            unavailable_reason: Some(reason),
        }
    }

    fn not_compiled(backend: Backend) -> Self {
        let feature = backend.cargo_feature().unwrap_or_default();
        Self::absent(
            backend,
            false,
            format!("not compiled into this build (rebuild with --features {feature})"),
        )
    }

    /// One line: availability and devices or the reason.
    pub fn describe(&self) -> String {
        match (&self.unavailable_reason, self.present) {
            (_, true) => self
                .devices
                .iter()
                .map(DeviceSummary::describe)
                .collect::<Vec<_>>()
                .join("; "),
            (Some(reason), false) => reason.clone(),
            (None, false) => "unavailable".to_string(),
        }
    }
}

/// Asks the probe about every backend, in priority order (CUDA, Metal, CPU).
pub fn survey(probe: &dyn DeviceProbe) -> Vec<BackendStatus> {
    Backend::PRIORITY
        .iter()
        .map(|&backend| backend_status(backend, probe))
        .collect()
}

fn backend_status(backend: Backend, probe: &dyn DeviceProbe) -> BackendStatus {
    match backend {
        Backend::Cuda if !probe.cuda_compiled() => BackendStatus::not_compiled(backend),
        Backend::Cuda => match probe.cuda_device_count() {
            Err(reason) => BackendStatus::absent(backend, true, reason),
            Ok(0) => BackendStatus::absent(
                backend,
                true,
                "no CUDA device found (the driver reports 0 devices)".to_string(),
            ),
            Ok(count) => BackendStatus::present(
                backend,
                (0..count)
                    .map(|ordinal| {
                        let info = probe.cuda_device_info(ordinal);
                        DeviceSummary {
                            device: device_label(backend, ordinal),
                            name: info.name.clone(),
                            compute_capability: info
                                .compute_capability
                                .map(|(major, minor)| format!("{major}.{minor}")),
                            memory: MemoryStats::from_cuda_info(ordinal, &info),
                        }
                    })
                    .collect(),
            ),
        },
        Backend::Metal if !probe.metal_compiled() => BackendStatus::not_compiled(backend),
        Backend::Metal => match probe.metal_available() {
            Err(reason) => BackendStatus::absent(backend, true, reason),
            Ok(()) => {
                let info = probe.metal_info();
                BackendStatus::present(
                    backend,
                    vec![DeviceSummary {
                        device: device_label(backend, 0),
                        name: info.name.clone(),
                        compute_capability: None,
                        memory: MemoryStats::from_metal_info(&info),
                    }],
                )
            }
        },
        Backend::Cpu => {
            let info = probe.cpu_info();
            BackendStatus::present(
                backend,
                vec![DeviceSummary {
                    device: device_label(backend, 0),
                    name: info.name.clone(),
                    compute_capability: None,
                    memory: MemoryStats::from_cpu_info(&info),
                }],
            )
        }
    }
}

/// Logs one line per backend: compiled in, present, and the devices or why not.
pub(crate) fn log_statuses(statuses: &[BackendStatus]) {
    for status in statuses {
        info!(
            backend = %status.backend,
            compiled_in = status.compiled_in,
            present = status.present,
            detail = %status.describe(),
            "device backend availability"
        );
    }
}
