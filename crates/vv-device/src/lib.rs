//! Device layer: device requests, hardware probing, resolution with fallback, dtype policy and
//! per-backend operations (synchronize, cache release, memory statistics).
//!
//! Typical use: parse a [`DeviceRequest`] while loading the configuration, then
//! [`resolve_device`] it against a [`SystemProbe`], pick the dtype with [`select_dtype`],
//! record both in a [`ModelInfo`], open the candle device with
//! [`ResolvedDevice::to_candle_device`] and check it with [`device_self_test`].

pub mod backend;
pub mod dtype;
pub mod error;
pub mod fallback;
mod guard;
pub mod human;
pub mod info;
pub mod ops;
pub mod probe;
pub mod report;
pub mod request;
pub mod resolve;
pub mod survey;
pub mod warmup;

pub use backend::Backend;
pub use dtype::{select_dtype, DTypeChoice};
pub use error::DeviceError;
pub use fallback::{classify, retry_after_clear_cache, FailureKind, FallbackNotice};
pub use info::ModelInfo;
pub use ops::{BackendOps, CandleOps, CudaAllocatorMemory, MemoryStats, RecordingOps};
pub use probe::{DeviceProbe, MockProbe, SystemProbe};
pub use report::DevicesReport;
pub use request::{DTypeRequest, DeviceRequest, InvalidDTypeRequest, InvalidDeviceRequest};
pub use resolve::{detect_best_device, resolve_device, Resolution, ResolvedDevice};
pub use survey::{BackendStatus, DeviceSummary};
pub use warmup::device_self_test;
