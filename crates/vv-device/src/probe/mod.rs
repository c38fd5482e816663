//! Hardware probing behind a trait: the real [`SystemProbe`] asks candle and the drivers, the
//! [`MockProbe`] answers from configuration for tests.

mod mock;
mod system;

#[cfg(feature = "cuda")]
pub(crate) mod cuda_driver;
#[cfg(feature = "metal")]
pub(crate) mod metal_driver;

pub use mock::MockProbe;
pub use system::SystemProbe;

use candle_core::DType;
use serde::Serialize;

/// Reason reported by probes for a backend that is not compiled into the build.
pub const NOT_COMPILED_REASON: &str = "not compiled into this build";

/// What is known about one CUDA device; every field is optional because drivers may refuse
/// any single query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CudaDeviceInfo {
    /// Device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: Option<String>,
    /// Total device memory in bytes.
    pub total_memory_bytes: Option<u64>,
    /// Free device memory in bytes.
    pub free_memory_bytes: Option<u64>,
    /// Compute capability `(major, minor)`.
    pub compute_capability: Option<(u32, u32)>,
    /// GPU utilisation in percent (NVML).
    pub utilization_percent: Option<u32>,
    /// GPU temperature in degrees Celsius (NVML).
    pub temperature_celsius: Option<u32>,
}

/// What is known about the Metal device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetalInfo {
    /// Device or architecture name, e.g. `applegpu_g14s`.
    pub name: Option<String>,
    /// Bytes currently allocated by the Metal device.
    pub allocated_bytes: Option<u64>,
    /// Metal's recommended maximum working set size in bytes (unified memory).
    pub recommended_working_set_bytes: Option<u64>,
}

/// What is known about the host CPU and its memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    /// CPU brand string.
    pub name: Option<String>,
    /// Hardware threads available to this process.
    pub threads: Option<usize>,
    /// Total system memory in bytes.
    pub total_memory_bytes: Option<u64>,
    /// Available system memory in bytes.
    pub available_memory_bytes: Option<u64>,
}

/// Answers questions about the hardware; errors are reasons (strings), never panics.
pub trait DeviceProbe: Send + Sync {
    /// Whether CUDA support is compiled into this build.
    fn cuda_compiled(&self) -> bool;
    /// Number of CUDA devices, or why none can be counted (no driver, no library, ...).
    fn cuda_device_count(&self) -> Result<usize, String>;
    /// Name and memory of CUDA device `ordinal` (fields it cannot read are `None`).
    fn cuda_device_info(&self, ordinal: usize) -> CudaDeviceInfo;
    /// Whether Metal support is compiled into this build.
    fn metal_compiled(&self) -> bool;
    /// `Ok` when a Metal device can be used, else why not.
    fn metal_available(&self) -> Result<(), String>;
    /// Name and memory of the Metal device.
    fn metal_info(&self) -> MetalInfo;
    /// Whether the Metal device computes `dtype` correctly (a half-precision self-test on real
    /// hardware); `Err` says why not.
    fn metal_supports(&self, dtype: DType) -> Result<(), String>;
    /// The host CPU and memory.
    fn cpu_info(&self) -> CpuInfo;
}
