//! The real [`BackendOps`]: candle's per-backend synchronize, cache release through the CUDA
//! driver's memory pool or Metal's buffer pool, and memory statistics.

use super::{method_for, BackendOp, BackendOps, MemoryStats, OpMethod, OpRecord};
use crate::backend::{candle_device_label, Backend};
use crate::guard::catch_panic;
use crate::ops::host_memory;
use candle_core::Device;
use tracing::warn;

/// Backend operations on real candle devices. Errors and panics of the drivers are logged and
/// recorded in the returned [`OpRecord`], never propagated.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleOps;

impl CandleOps {
    fn run(op: BackendOp, device: &Device) -> OpRecord {
        let backend = Backend::of(device);
        let method = method_for(op, backend);
        let error = execute(method, device).err();
        if let Some(error) = &error {
            warn!(
                device = %candle_device_label(device),
                ?op,
                ?method,
                %error,
                "backend operation failed; ignored"
            );
        }
        OpRecord {
            op,
            backend,
            method,
            error,
        }
    }
}

impl BackendOps for CandleOps {
    fn synchronize(&self, device: &Device) -> OpRecord {
        Self::run(BackendOp::Synchronize, device)
    }

    fn clear_cache(&self, device: &Device) -> OpRecord {
        Self::run(BackendOp::ClearCache, device)
    }

    fn memory_stats(&self, device: &Device) -> MemoryStats {
        let stats = match device {
            Device::Cpu => MemoryStats::unavailable(Backend::Cpu, 0),
            Device::Cuda(_) => cuda_stats(device),
            Device::Metal(_) => metal_stats(device),
        };
        stats.with_host(&host_memory())
    }
}

fn execute(method: OpMethod, device: &Device) -> Result<(), String> {
    match method {
        OpMethod::CpuNoop => Ok(()),
        OpMethod::CudaSynchronize | OpMethod::MetalWaitUntilCompleted => {
            catch_panic(|| device.synchronize())?.map_err(|e| e.to_string())
        }
        OpMethod::CudaSynchronizeAndTrimPool => trim_cuda_pool(device),
    }
}

#[cfg(feature = "cuda")]
fn trim_cuda_pool(device: &Device) -> Result<(), String> {
    let cuda = device.as_cuda_device().map_err(|e| e.to_string())?;
    let stream = cuda.cuda_stream();
    crate::probe::cuda_driver::trim_memory_pool(stream.context())
}

/// Without the `cuda` feature no CUDA device can exist; synchronizing is all there is to do.
#[cfg(not(feature = "cuda"))]
fn trim_cuda_pool(device: &Device) -> Result<(), String> {
    device.synchronize().map_err(|e| e.to_string())
}

#[cfg(feature = "cuda")]
fn cuda_stats(device: &Device) -> MemoryStats {
    match device.as_cuda_device() {
        Ok(cuda) => {
            let stream = cuda.cuda_stream();
            let context = stream.context();
            MemoryStats {
                cuda_allocators: crate::probe::cuda_driver::allocator_memory(context),
                ..MemoryStats::from_cuda_info(
                    context.ordinal(),
                    &crate::probe::cuda_driver::context_info(context),
                )
            }
        }
        Err(_) => MemoryStats::unavailable(Backend::Cuda, 0),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_stats(_device: &Device) -> MemoryStats {
    MemoryStats::unavailable(Backend::Cuda, 0)
}

#[cfg(feature = "metal")]
fn metal_stats(device: &Device) -> MemoryStats {
    MemoryStats::from_metal_info(&crate::probe::metal_driver::device_info(device))
}

#[cfg(not(feature = "metal"))]
fn metal_stats(_device: &Device) -> MemoryStats {
    MemoryStats::unavailable(Backend::Metal, 0)
}
