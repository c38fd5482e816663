//! The compute backends (CUDA, Metal, CPU), their priority order and their names.

use candle_core::{Device, DeviceLocation};
use serde::Serialize;
use std::fmt;

/// A compute backend of candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// NVIDIA GPUs through CUDA.
    Cuda,
    /// Apple Silicon GPUs through Metal (requested as `mps` or `metal`).
    Metal,
    /// The host CPU.
    Cpu,
}

impl Backend {
    /// Every backend, in automatic-selection priority order (best first).
    pub const PRIORITY: [Backend; 3] = [Backend::Cuda, Backend::Metal, Backend::Cpu];

    /// The backend of a candle device.
    pub fn of(device: &Device) -> Self {
        match device {
            Device::Cpu => Self::Cpu,
            Device::Cuda(_) => Self::Cuda,
            Device::Metal(_) => Self::Metal,
        }
    }

    /// The cargo feature that compiles this backend in (`None` for the CPU, always present).
    pub fn cargo_feature(self) -> Option<&'static str> {
        match self {
            Self::Cuda => Some("cuda"),
            Self::Metal => Some("metal"),
            Self::Cpu => None,
        }
    }

    /// Whether this build of the crate was compiled with the backend.
    pub fn compiled_into_this_build(self) -> bool {
        match self {
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Metal => cfg!(feature = "metal"),
            Self::Cpu => true,
        }
    }

    /// Lower-case name: `cuda`, `metal` or `cpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::Metal => "metal",
            Self::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device string of a backend and ordinal, in the form a request accepts:
/// `cuda:N`, `mps` or `cpu`.
pub fn device_label(backend: Backend, ordinal: usize) -> String {
    match backend {
        Backend::Cuda => format!("cuda:{ordinal}"),
        Backend::Metal => "mps".to_string(),
        Backend::Cpu => "cpu".to_string(),
    }
}

/// The device string of a candle device (`cuda:N`, `mps` or `cpu`).
pub fn candle_device_label(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => device_label(Backend::Cpu, 0),
        DeviceLocation::Cuda { gpu_id } => device_label(Backend::Cuda, gpu_id),
        DeviceLocation::Metal { gpu_id } => device_label(Backend::Metal, gpu_id),
    }
}
