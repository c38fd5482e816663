//! The real probe: asks candle, the CUDA driver and Metal, compiled per cargo feature.
//! Driver answers that cannot change while the process runs (device counts, Metal
//! availability, half-precision self-tests) are computed once and cached, so repeated
//! detection gives the same answer.

use super::{CpuInfo, CudaDeviceInfo, DeviceProbe, MetalInfo};
use crate::ops::host_memory;
use candle_core::DType;
#[cfg(any(feature = "cuda", feature = "metal"))]
use std::sync::OnceLock;

/// Probes the hardware of this machine through candle and the drivers.
#[derive(Debug, Default)]
pub struct SystemProbe {
    #[cfg(feature = "cuda")]
    cuda_count: OnceLock<Result<usize, String>>,
    #[cfg(feature = "metal")]
    metal_device: OnceLock<Result<candle_core::Device, String>>,
    #[cfg(feature = "metal")]
    metal_bf16: OnceLock<Result<(), String>>,
    #[cfg(feature = "metal")]
    metal_f16: OnceLock<Result<(), String>>,
}

impl SystemProbe {
    /// A probe that has asked nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(feature = "metal")]
    fn metal_device(&self) -> Result<&candle_core::Device, String> {
        self.metal_device
            .get_or_init(super::metal_driver::open_device)
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl DeviceProbe for SystemProbe {
    fn cuda_compiled(&self) -> bool {
        cfg!(feature = "cuda")
    }

    fn cuda_device_count(&self) -> Result<usize, String> {
        #[cfg(feature = "cuda")]
        {
            self.cuda_count
                .get_or_init(super::cuda_driver::device_count)
                .clone()
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(super::NOT_COMPILED_REASON.to_string())
        }
    }

    fn cuda_device_info(&self, ordinal: usize) -> CudaDeviceInfo {
        #[cfg(feature = "cuda")]
        {
            match self.cuda_device_count() {
                Ok(count) if ordinal < count => super::cuda_driver::device_info(ordinal),
                _ => CudaDeviceInfo::default(),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            CudaDeviceInfo::default()
        }
    }

    fn metal_compiled(&self) -> bool {
        cfg!(feature = "metal")
    }

    fn metal_available(&self) -> Result<(), String> {
        #[cfg(feature = "metal")]
        {
            self.metal_device().map(|_| ())
        }
        #[cfg(not(feature = "metal"))]
        {
            Err(super::NOT_COMPILED_REASON.to_string())
        }
    }

    fn metal_info(&self) -> MetalInfo {
        #[cfg(feature = "metal")]
        {
            self.metal_device()
                .map(super::metal_driver::device_info)
                .unwrap_or_default()
        }
        #[cfg(not(feature = "metal"))]
        {
            MetalInfo::default()
        }
    }

    fn metal_supports(&self, dtype: DType) -> Result<(), String> {
        #[cfg(feature = "metal")]
        {
            let cache = match dtype {
                DType::BF16 => &self.metal_bf16,
                DType::F16 => &self.metal_f16,
                DType::F32 => return self.metal_available(),
                other => return Err(format!("{} is not a compute dtype", other.as_str())),
            };
            cache
                .get_or_init(|| {
                    let device = self.metal_device()?;
                    crate::warmup::half_precision_self_test(device, dtype).map(|_| ())
                })
                .clone()
        }
        #[cfg(not(feature = "metal"))]
        {
            let _ = dtype;
            Err(super::NOT_COMPILED_REASON.to_string())
        }
    }

    fn cpu_info(&self) -> CpuInfo {
        let host = host_memory();
        CpuInfo {
            name: cpu_brand(),
            threads: std::thread::available_parallelism().ok().map(usize::from),
            total_memory_bytes: host.system_total_bytes,
            available_memory_bytes: host.system_available_bytes,
        }
    }
}

/// The CPU brand string, if the operating system tells it.
fn cpu_brand() -> Option<String> {
    use sysinfo::{CpuRefreshKind, RefreshKind, System};
    let system =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
    system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().trim().to_string())
        .filter(|brand| !brand.is_empty())
}
