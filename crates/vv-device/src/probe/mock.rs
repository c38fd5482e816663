//! A configurable probe for tests: compiled-in flags, device counts, names, memory, driver
//! failures and half-precision support are all set by the builder.

use super::{CpuInfo, CudaDeviceInfo, DeviceProbe, MetalInfo, NOT_COMPILED_REASON};
use candle_core::DType;

/// A probe answering from configuration. [`MockProbe::new`] is a CPU-only build; the
/// `with_*` methods add backends.
#[derive(Debug, Clone)]
pub struct MockProbe {
    cuda_compiled: bool,
    cuda: Result<Vec<CudaDeviceInfo>, String>,
    metal_compiled: bool,
    metal: Result<MetalInfo, String>,
    bf16: Result<(), String>,
    f16: Result<(), String>,
    cpu: CpuInfo,
}

impl Default for MockProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl MockProbe {
    /// A CPU-only build: neither CUDA nor Metal compiled in; half precision unsupported on Metal.
    pub fn new() -> Self {
        Self {
            cuda_compiled: false,
            cuda: Ok(Vec::new()),
            metal_compiled: false,
            metal: Err("no Metal device".to_string()),
            bf16: Err("bf16 self-test not configured".to_string()),
            f16: Err("f16 self-test not configured".to_string()),
            cpu: CpuInfo {
                name: Some("Mock CPU".to_string()),
                threads: Some(4),
                total_memory_bytes: Some(16 << 30),
                available_memory_bytes: Some(8 << 30),
            },
        }
    }

    /// Sets whether CUDA is compiled in, leaving the configured devices as they are.
    pub fn with_cuda_compiled(mut self, compiled: bool) -> Self {
        self.cuda_compiled = compiled;
        self
    }

    /// CUDA compiled in with `count` devices named `Mock GPU i` with 16 GiB each.
    pub fn with_cuda_devices(mut self, count: usize) -> Self {
        let devices = (0..count)
            .map(|i| CudaDeviceInfo {
                name: Some(format!("Mock GPU {i}")),
                total_memory_bytes: Some(16 << 30),
                free_memory_bytes: Some(15 << 30),
                compute_capability: Some((9, 0)),
                utilization_percent: None,
                temperature_celsius: None,
            })
            .collect();
        self.cuda_compiled = true;
        self.cuda = Ok(devices);
        self
    }

    /// CUDA compiled in, with one more device described by `info`.
    pub fn with_cuda_device(mut self, info: CudaDeviceInfo) -> Self {
        self.cuda_compiled = true;
        match &mut self.cuda {
            Ok(devices) => devices.push(info),
            Err(_) => self.cuda = Ok(vec![info]),
        }
        self
    }

    /// CUDA compiled in, but the driver cannot be used (e.g. `libcuda not found`).
    pub fn with_cuda_failure(mut self, reason: impl Into<String>) -> Self {
        self.cuda_compiled = true;
        self.cuda = Err(reason.into());
        self
    }

    /// Sets whether Metal is compiled in, leaving its availability as it is.
    pub fn with_metal_compiled(mut self, compiled: bool) -> Self {
        self.metal_compiled = compiled;
        self
    }

    /// Metal compiled in and usable, with a default `Mock Apple GPU` of 1 GiB allocated and
    /// 12 GiB recommended working set.
    pub fn with_metal(self) -> Self {
        self.with_metal_info(MetalInfo {
            name: Some("Mock Apple GPU".to_string()),
            allocated_bytes: Some(1 << 30),
            recommended_working_set_bytes: Some(12 << 30),
        })
    }

    /// Metal compiled in and usable, described by `info`.
    pub fn with_metal_info(mut self, info: MetalInfo) -> Self {
        self.metal_compiled = true;
        self.metal = Ok(info);
        self
    }

    /// Metal compiled in but unusable (e.g. no Metal device).
    pub fn with_metal_failure(mut self, reason: impl Into<String>) -> Self {
        self.metal_compiled = true;
        self.metal = Err(reason.into());
        self
    }

    /// Sets the outcome of the Metal half-precision self-test for `dtype` (bf16 or f16).
    pub fn with_half_support(mut self, dtype: DType, supported: bool) -> Self {
        let outcome = if supported {
            Ok(())
        } else {
            Err(format!(
                "{} self-test failed on the mock device",
                dtype.as_str()
            ))
        };
        match dtype {
            DType::BF16 => self.bf16 = outcome,
            DType::F16 => self.f16 = outcome,
            _ => {}
        }
        self
    }

    /// Sets the host CPU description.
    pub fn with_cpu_info(mut self, cpu: CpuInfo) -> Self {
        self.cpu = cpu;
        self
    }
}

impl DeviceProbe for MockProbe {
    fn cuda_compiled(&self) -> bool {
        self.cuda_compiled
    }

    fn cuda_device_count(&self) -> Result<usize, String> {
        if !self.cuda_compiled {
            return Err(NOT_COMPILED_REASON.to_string());
        }
        self.cuda.as_ref().map(Vec::len).map_err(Clone::clone)
    }

    fn cuda_device_info(&self, ordinal: usize) -> CudaDeviceInfo {
        self.cuda
            .as_ref()
            .ok()
            .and_then(|devices| devices.get(ordinal).cloned())
            .unwrap_or_default()
    }

    fn metal_compiled(&self) -> bool {
        self.metal_compiled
    }

    fn metal_available(&self) -> Result<(), String> {
        if !self.metal_compiled {
            return Err(NOT_COMPILED_REASON.to_string());
        }
        self.metal.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    fn metal_info(&self) -> MetalInfo {
        self.metal.clone().unwrap_or_default()
    }

    fn metal_supports(&self, dtype: DType) -> Result<(), String> {
        self.metal_available()?;
        match dtype {
            DType::F32 => Ok(()),
            DType::BF16 => self.bf16.clone(),
            DType::F16 => self.f16.clone(),
            other => Err(format!("{} is not a compute dtype", other.as_str())),
        }
    }

    fn cpu_info(&self) -> CpuInfo {
        self.cpu.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_cpu_only() {
        let p = MockProbe::new();
        assert!(!p.cuda_compiled() && !p.metal_compiled());
        assert_eq!(p.cuda_device_count(), Err(NOT_COMPILED_REASON.to_string()));
        assert!(p.metal_available().is_err());
    }

    #[test]
    fn builder_configures_devices_and_failures() {
        let p = MockProbe::new().with_cuda_devices(2).with_metal();
        assert_eq!(p.cuda_device_count(), Ok(2));
        assert_eq!(p.cuda_device_info(1).name.as_deref(), Some("Mock GPU 1"));
        assert_eq!(p.cuda_device_info(5), CudaDeviceInfo::default());
        assert_eq!(p.metal_available(), Ok(()));
        let p = p.with_cuda_failure("libcuda.so not found");
        assert_eq!(
            p.cuda_device_count(),
            Err("libcuda.so not found".to_string())
        );
        let p = p.with_half_support(DType::F16, true);
        assert_eq!(p.metal_supports(DType::F16), Ok(()));
        assert!(p.metal_supports(DType::BF16).is_err());
        assert!(p.with_cuda_compiled(false).cuda_device_count().is_err());
    }
}
