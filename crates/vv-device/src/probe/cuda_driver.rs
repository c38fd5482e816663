//! CUDA queries through cudarc (re-exported by candle) and NVML; compiled with the `cuda`
//! feature only. Every driver call is guarded: a missing library is a reason, never a panic.

use super::CudaDeviceInfo;
use crate::guard::catch_panic;
use crate::ops::CudaAllocatorMemory;
use candle_core::cuda::cudarc::driver::{sys::CUuuid, CudaContext};
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;
use std::sync::{Arc, OnceLock};
use tracing::{debug, info};

/// Number of CUDA devices the driver reports, or why it cannot be asked; asked once per process.
pub(crate) fn device_count() -> Result<usize, String> {
    static COUNT: OnceLock<Result<usize, String>> = OnceLock::new();
    COUNT.get_or_init(count_devices).clone()
}

/// Asks the driver for its device count.
///
/// When CUDA is loaded at run time (cudarc's `dynamic-loading`, as `scripts/build-cuda.sh`
/// builds it), a missing libcuda makes cudarc panic. The call runs with the panic hook silenced,
/// so a machine without CUDA gets a reason and no panic message on stderr.
fn count_devices() -> Result<usize, String> {
    match silently(|| catch_panic(CudaContext::device_count)) {
        Ok(Ok(n)) => usize::try_from(n).map_err(|_| format!("the driver reported {n} devices")),
        Ok(Err(e)) => Err(format!("CUDA driver error: {e}")),
        Err(panic) => {
            let detail = panic.trim_start_matches("panicked: ");
            debug!(detail, "cudarc could not load the CUDA driver library");
            Err(
                "the CUDA driver library (libcuda) could not be loaded: no NVIDIA driver found"
                    .into(),
            )
        }
    }
}

/// Runs `f` with the process's panic hook replaced by a silent one, then restores the hook.
/// `f` must not unwind (wrap it in [`catch_panic`]).
fn silently<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let value = f();
    std::panic::set_hook(hook);
    value
}

/// Name, memory, compute capability and NVML telemetry of device `ordinal`.
pub(crate) fn device_info(ordinal: usize) -> CudaDeviceInfo {
    match catch_panic(|| CudaContext::new(ordinal)) {
        Ok(Ok(ctx)) => context_info(&ctx),
        Ok(Err(e)) => {
            debug!(ordinal, error = %e, "cannot open a CUDA context for device info");
            CudaDeviceInfo::default()
        }
        Err(panic) => {
            debug!(ordinal, %panic, "cannot open a CUDA context for device info");
            CudaDeviceInfo::default()
        }
    }
}

/// Everything readable about the device of an open context; unreadable fields are `None`.
pub(crate) fn context_info(ctx: &Arc<CudaContext>) -> CudaDeviceInfo {
    catch_panic(|| {
        let (free, total) = match ctx.mem_get_info() {
            Ok((free, total)) => (Some(free as u64), Some(total as u64)),
            Err(_) => (None, ctx.total_mem().ok().map(|t| t as u64)),
        };
        let compute_capability = ctx.compute_capability().ok().and_then(|(major, minor)| {
            Some((u32::try_from(major).ok()?, u32::try_from(minor).ok()?))
        });
        let (utilization_percent, temperature_celsius) = nvml_telemetry(ctx);
        CudaDeviceInfo {
            name: ctx.name().ok(),
            total_memory_bytes: total,
            free_memory_bytes: free,
            compute_capability,
            utilization_percent,
            temperature_celsius,
        }
    })
    .unwrap_or_default()
}

/// Synchronizes the context's work, then returns the unused memory of the device's default
/// stream-ordered pool (`cuMemPoolTrimTo(pool, 0)`) and of its graph memory pool
/// (`cuDeviceGraphMemTrim`: the physical memory of graphs that are not running; a graph maps
/// it again when it is next launched) to the driver. The pool is trimmed first, so a driver
/// that refuses the graph trim still gets the pool's memory back (the out-of-memory retry
/// relies on it).
pub(crate) fn trim_memory_pool(ctx: &Arc<CudaContext>) -> Result<(), String> {
    use candle_core::cuda::cudarc::driver::{result, sys};
    catch_panic(|| {
        ctx.synchronize().map_err(|e| e.to_string())?;
        if ctx.has_async_alloc() {
            // SAFETY: `cu_device` comes from a live context, and the pool handle returned by
            // the driver for that device is valid for as long as the context lives (it outlives
            // this call).
            unsafe {
                let pool = result::device::get_default_mem_pool(ctx.cu_device())
                    .map_err(|e| e.to_string())?;
                result::mem_pool::trim_to(pool, 0).map_err(|e| e.to_string())?;
            }
        }
        // SAFETY: `cu_device` comes from a live context; the graph memory of a device may be
        // trimmed at any time (memory of running or queued graphs is kept).
        unsafe { sys::cuDeviceGraphMemTrim(ctx.cu_device()).result() }.map_err(|e| e.to_string())
    })?
}

/// One 64-bit memory attribute of the device's default stream-ordered pool.
fn pool_attribute(
    ctx: &Arc<CudaContext>,
    attr: candle_core::cuda::cudarc::driver::sys::CUmemPool_attribute,
) -> Result<u64, String> {
    use candle_core::cuda::cudarc::driver::result;
    catch_panic(|| {
        let mut value = 0u64;
        // SAFETY: `cu_device` comes from a live context, whose default pool outlives the call;
        // the memory attributes asked for here are 64-bit values.
        unsafe {
            let pool =
                result::device::get_default_mem_pool(ctx.cu_device()).map_err(|e| e.to_string())?;
            result::mem_pool::get_attribute(pool, attr, (&raw mut value).cast())
                .map_err(|e| e.to_string())?;
        }
        Ok(value)
    })?
}

/// What the device's two allocators hold: the default stream-ordered pool (candle's tensors)
/// and the graph memory pool (the CUDA graphs' own allocations). Unreadable values are `None`.
pub(crate) fn allocator_memory(ctx: &Arc<CudaContext>) -> CudaAllocatorMemory {
    use candle_core::cuda::cudarc::driver::sys;
    let device = ctx.cu_device();
    let graph = |attr: sys::CUgraphMem_attribute| -> Option<u64> {
        let mut value = 0u64;
        // SAFETY: `device` comes from a live context; the graph memory attributes are 64-bit.
        let read = catch_panic(|| unsafe {
            sys::cuDeviceGetGraphMemAttribute(device, attr, (&raw mut value).cast()).result()
        });
        matches!(read, Ok(Ok(()))).then_some(value)
    };
    let pool = |attr| {
        ctx.has_async_alloc()
            .then(|| pool_attribute(ctx, attr).ok())
            .flatten()
    };
    use sys::CUgraphMem_attribute as G;
    use sys::CUmemPool_attribute as P;
    CudaAllocatorMemory {
        pool_reserved_bytes: pool(P::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT),
        pool_used_bytes: pool(P::CU_MEMPOOL_ATTR_USED_MEM_CURRENT),
        graph_reserved_bytes: graph(G::CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT),
        graph_used_bytes: graph(G::CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT),
    }
}

/// NVML, loaded once per process; `None` when libnvidia-ml is absent.
fn nvml() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(|| match catch_panic(Nvml::init) {
        Ok(Ok(nvml)) => Some(nvml),
        Ok(Err(e)) => {
            info!(error = %e, "NVML unavailable: GPU utilisation and temperature are reported as unavailable");
            None
        }
        Err(panic) => {
            info!(%panic, "NVML unavailable: GPU utilisation and temperature are reported as unavailable");
            None
        }
    })
    .as_ref()
}

/// GPU utilisation (%) and temperature (°C) of the context's device through NVML, matched by
/// UUID (CUDA and NVML may number devices differently), else by ordinal.
fn nvml_telemetry(ctx: &Arc<CudaContext>) -> (Option<u32>, Option<u32>) {
    let Some(nvml) = nvml() else {
        return (None, None);
    };
    let device = ctx
        .uuid()
        .ok()
        .and_then(|uuid| nvml.device_by_uuid(nvml_uuid(&uuid)).ok())
        .or_else(|| {
            let index = u32::try_from(ctx.ordinal()).ok()?;
            nvml.device_by_index(index).ok()
        });
    let Some(device) = device else {
        return (None, None);
    };
    (
        device.utilization_rates().ok().map(|u| u.gpu),
        device.temperature(TemperatureSensor::Gpu).ok(),
    )
}

/// NVML's UUID string form, `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn nvml_uuid(uuid: &CUuuid) -> String {
    let hex: Vec<String> = uuid
        .bytes
        .iter()
        .map(|b| format!("{:02x}", *b as u8))
        .collect();
    let group = |from: usize, to: usize| hex.get(from..to).unwrap_or_default().concat();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        group(0, 4),
        group(4, 6),
        group(6, 8),
        group(8, 10),
        group(10, 16)
    )
}
