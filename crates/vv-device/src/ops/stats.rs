//! Memory statistics per backend (CUDA free/total and NVML telemetry, Metal allocated size and
//! recommended working set, host RSS and system memory); unreadable values are `None`.

use crate::backend::{device_label, Backend};
use crate::probe::{CpuInfo, CudaDeviceInfo, MetalInfo};
use serde::Serialize;

/// Memory statistics of one device. `used`/`free`/`total` mean: CUDA device memory; Metal
/// allocated bytes against the recommended working set (unified memory); CPU process RSS
/// against system memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Backend of the device.
    pub backend: Backend,
    /// Device string (`cuda:N`, `mps`, `cpu`).
    pub device: String,
    /// Bytes in use.
    pub used_bytes: Option<u64>,
    /// Bytes free.
    pub free_bytes: Option<u64>,
    /// Bytes in total.
    pub total_bytes: Option<u64>,
    /// GPU utilisation in percent (CUDA through NVML).
    pub utilization_percent: Option<u32>,
    /// GPU temperature in degrees Celsius (CUDA through NVML).
    pub temperature_celsius: Option<u32>,
    /// Bytes allocated by the Metal device.
    pub metal_allocated_bytes: Option<u64>,
    /// Metal's recommended maximum working set in bytes.
    pub metal_recommended_working_set_bytes: Option<u64>,
    /// CUDA: what the device's allocators hold (see [`CudaAllocatorMemory`]).
    #[serde(flatten)]
    pub cuda_allocators: CudaAllocatorMemory,
    /// Resident set size of this process in bytes.
    pub process_rss_bytes: Option<u64>,
    /// Total system memory in bytes.
    pub system_total_bytes: Option<u64>,
    /// Available system memory in bytes.
    pub system_available_bytes: Option<u64>,
}

/// What a CUDA device's two allocators hold, in bytes: the default stream-ordered pool, where
/// tensors live (reserved: mapped by the pool; used: handed out), and the graph memory pool,
/// where the CUDA graphs' own allocations live (reserved: mapped for graphs; used: held by
/// graphs). Memory reserved and not used is what a cache release (`clear_cache`) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CudaAllocatorMemory {
    /// Stream-ordered pool: bytes mapped.
    #[serde(rename = "cuda_pool_reserved_bytes")]
    pub pool_reserved_bytes: Option<u64>,
    /// Stream-ordered pool: bytes handed out.
    #[serde(rename = "cuda_pool_used_bytes")]
    pub pool_used_bytes: Option<u64>,
    /// Graph memory pool: bytes mapped.
    #[serde(rename = "cuda_graph_memory_reserved_bytes")]
    pub graph_reserved_bytes: Option<u64>,
    /// Graph memory pool: bytes held by graphs.
    #[serde(rename = "cuda_graph_memory_used_bytes")]
    pub graph_used_bytes: Option<u64>,
}

impl MemoryStats {
    /// Statistics with every value unavailable.
    pub fn unavailable(backend: Backend, ordinal: usize) -> Self {
        Self {
            backend,
            device: device_label(backend, ordinal),
            used_bytes: None,
            free_bytes: None,
            total_bytes: None,
            utilization_percent: None,
            temperature_celsius: None,
            metal_allocated_bytes: None,
            metal_recommended_working_set_bytes: None,
            cuda_allocators: CudaAllocatorMemory::default(),
            process_rss_bytes: None,
            system_total_bytes: None,
            system_available_bytes: None,
        }
    }

    /// CUDA device `ordinal` as a probe describes it.
    pub fn from_cuda_info(ordinal: usize, info: &CudaDeviceInfo) -> Self {
        let total = info.total_memory_bytes;
        let free = info.free_memory_bytes;
        Self {
            used_bytes: total.zip(free).and_then(|(t, f)| t.checked_sub(f)),
            free_bytes: free,
            total_bytes: total,
            utilization_percent: info.utilization_percent,
            temperature_celsius: info.temperature_celsius,
            ..Self::unavailable(Backend::Cuda, ordinal)
        }
    }

    /// The Metal device as a probe describes it.
    pub fn from_metal_info(info: &MetalInfo) -> Self {
        let allocated = info.allocated_bytes;
        let working_set = info.recommended_working_set_bytes;
        Self {
            used_bytes: allocated,
            free_bytes: working_set.zip(allocated).map(|(w, a)| w.saturating_sub(a)),
            total_bytes: working_set,
            metal_allocated_bytes: allocated,
            metal_recommended_working_set_bytes: working_set,
            ..Self::unavailable(Backend::Metal, 0)
        }
    }

    /// The CPU as a probe describes it (system memory; the RSS comes from [`Self::with_host`]).
    pub fn from_cpu_info(info: &CpuInfo) -> Self {
        Self {
            free_bytes: info.available_memory_bytes,
            total_bytes: info.total_memory_bytes,
            system_total_bytes: info.total_memory_bytes,
            system_available_bytes: info.available_memory_bytes,
            ..Self::unavailable(Backend::Cpu, 0)
        }
    }

    /// Adds host figures (process RSS, system memory); on the CPU they are also the device's
    /// used/free/total.
    pub fn with_host(mut self, host: &HostMemory) -> Self {
        self.process_rss_bytes = host.process_rss_bytes;
        self.system_total_bytes = host.system_total_bytes;
        self.system_available_bytes = host.system_available_bytes;
        if self.backend == Backend::Cpu {
            self.used_bytes = host.process_rss_bytes;
            self.free_bytes = host.system_available_bytes;
            self.total_bytes = host.system_total_bytes;
        }
        self
    }
}

/// Memory of the host and of this process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostMemory {
    /// Resident set size of this process in bytes.
    pub process_rss_bytes: Option<u64>,
    /// Total system memory in bytes.
    pub system_total_bytes: Option<u64>,
    /// Available system memory in bytes.
    pub system_available_bytes: Option<u64>,
}

/// Reads host memory through `sysinfo` (any OS); values it cannot read are `None`.
pub fn host_memory() -> HostMemory {
    use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, System};
    let mut system = System::new();
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let process_rss_bytes = sysinfo::get_current_pid().ok().and_then(|pid| {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map(|p| p.memory())
    });
    let nonzero = |v: u64| (v > 0).then_some(v);
    HostMemory {
        process_rss_bytes: process_rss_bytes.and_then(nonzero),
        system_total_bytes: nonzero(system.total_memory()),
        system_available_bytes: nonzero(system.available_memory()),
    }
}
