//! Per-backend operations: synchronize, cache release and memory statistics. They never fail
//! the caller: errors are logged and reported in the returned record, never as `Err`.

mod candle_ops;
mod recording;
mod stats;

pub use candle_ops::CandleOps;
pub use recording::RecordingOps;
pub use stats::{host_memory, CudaAllocatorMemory, HostMemory, MemoryStats};

use crate::backend::Backend;
use candle_core::Device;
use serde::Serialize;

/// An operation of [`BackendOps`] that acts on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendOp {
    /// Wait for all queued work.
    Synchronize,
    /// Return cached, unused device memory.
    ClearCache,
}

/// The backend-specific method that carries out a [`BackendOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpMethod {
    /// Nothing to do: CPU work is synchronous and the CPU has no device cache.
    CpuNoop,
    /// `Device::synchronize`: waits for the device's stream.
    CudaSynchronize,
    /// Synchronize the context, then `cuMemPoolTrimTo(default pool, 0)` and
    /// `cuDeviceGraphMemTrim` return the unused memory of the stream-ordered pool and of the
    /// graph memory pool (graphs not running) to the driver.
    CudaSynchronizeAndTrimPool,
    /// `Device::synchronize` on Metal: waits for the committed command buffers, then drops
    /// unused pooled buffers (candle's Metal cache release).
    MetalWaitUntilCompleted,
}

impl OpMethod {
    /// The backend the method belongs to.
    pub fn backend(self) -> Backend {
        match self {
            Self::CpuNoop => Backend::Cpu,
            Self::CudaSynchronize | Self::CudaSynchronizeAndTrimPool => Backend::Cuda,
            Self::MetalWaitUntilCompleted => Backend::Metal,
        }
    }
}

/// The method every backend uses for `op`: the single dispatch table of [`CandleOps`].
pub fn method_for(op: BackendOp, backend: Backend) -> OpMethod {
    match (backend, op) {
        (Backend::Cpu, _) => OpMethod::CpuNoop,
        (Backend::Cuda, BackendOp::Synchronize) => OpMethod::CudaSynchronize,
        (Backend::Cuda, BackendOp::ClearCache) => OpMethod::CudaSynchronizeAndTrimPool,
        (Backend::Metal, _) => OpMethod::MetalWaitUntilCompleted,
    }
}

/// What an operation did: the method used and the error it swallowed, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpRecord {
    /// The operation.
    pub op: BackendOp,
    /// The backend of the device it ran on.
    pub backend: Backend,
    /// The backend-specific method used.
    pub method: OpMethod,
    /// The error that was logged and swallowed, if the method failed.
    pub error: Option<String>,
}

/// Backend-specific device operations; implementations never panic and never return errors.
pub trait BackendOps: Send + Sync {
    /// Waits until all work queued on `device` has finished.
    fn synchronize(&self, device: &Device) -> OpRecord;
    /// Releases cached, unused memory of `device`.
    fn clear_cache(&self, device: &Device) -> OpRecord;
    /// Memory statistics of `device`; what cannot be read is `None`.
    fn memory_stats(&self, device: &Device) -> MemoryStats;
}
