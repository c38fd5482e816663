//! Prometheus metrics (prefix `vibevoice_`): one [`Metrics`] registry shared through the app
//! state, the engine observer that feeds it, per-utterance recording and device gauges.

mod capacity;
mod connections;
mod context;
mod device;
mod families;
mod observer;
mod session;

pub use capacity::CapacityMetrics;
pub use connections::ConnectionMetrics;
pub use context::{ContextRecorder, Outcome};
pub use device::{DeviceGauges, DeviceMonitor};
pub use families::Metrics;
pub use observer::MetricsObserver;
pub use session::WsSessionGuard;

/// `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
