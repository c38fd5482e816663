//! A recording [`BackendOps`] for tests: it pretends to be a device of a chosen backend,
//! records every call with the method that backend would use, and returns configured stats.

use super::{method_for, BackendOp, BackendOps, MemoryStats, OpRecord};
use crate::backend::Backend;
use candle_core::Device;
use std::sync::{Mutex, PoisonError};

/// Records calls as if the device were of `backend`, whatever candle device is passed.
#[derive(Debug)]
pub struct RecordingOps {
    backend: Backend,
    stats: MemoryStats,
    calls: Mutex<Vec<OpRecord>>,
}

impl RecordingOps {
    /// Pretends every device is of `backend`; memory stats are all unavailable.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            stats: MemoryStats::unavailable(backend, 0),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Returns `stats` from [`BackendOps::memory_stats`].
    pub fn with_stats(mut self, stats: MemoryStats) -> Self {
        self.stats = stats;
        self
    }

    /// The calls so far, oldest first.
    pub fn calls(&self) -> Vec<OpRecord> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, op: BackendOp) -> OpRecord {
        let record = OpRecord {
            op,
            backend: self.backend,
            method: method_for(op, self.backend),
            error: None,
        };
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.clone());
        record
    }
}

impl BackendOps for RecordingOps {
    fn synchronize(&self, _device: &Device) -> OpRecord {
        self.record(BackendOp::Synchronize)
    }

    fn clear_cache(&self, _device: &Device) -> OpRecord {
        self.record(BackendOp::ClearCache)
    }

    fn memory_stats(&self, _device: &Device) -> MemoryStats {
        self.stats.clone()
    }
}
