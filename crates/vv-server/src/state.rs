//! Shared application state: settings, the engine once it is loaded and warmed up, metrics,
//! the device monitor and the drain flag. Cheap to clone; every route reads it.

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use vv_engine::EngineHandle;

use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::{DeviceMonitor, Metrics};

/// State shared by all routes and the WebSocket sessions.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    engine: OnceLock<EngineHandle>,
    device: OnceLock<DeviceMonitor>,
    metrics: Arc<Metrics>,
    draining: watch::Sender<bool>,
}

impl AppState {
    /// State with no engine yet (the service is up but not ready).
    pub fn new(settings: Settings) -> Result<Self, prometheus::Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                engine: OnceLock::new(),
                device: OnceLock::new(),
                metrics: Arc::new(Metrics::new()?),
                draining: watch::Sender::new(false),
            }),
        })
    }

    /// The service settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Installs the loaded and warmed-up engine (and the device to monitor); from now on
    /// the service is ready unless draining. A second call is ignored.
    pub fn set_engine(&self, engine: EngineHandle, device: Option<DeviceMonitor>) {
        self.inner.metrics.record_engine(engine.info());
        if let Some(device) = device {
            let _ = self.inner.device.set(device);
        }
        if self.is_draining() {
            engine.start_draining();
        }
        let _ = self.inner.engine.set(engine);
    }

    /// The engine, whatever the drain state (`None` while loading).
    pub fn loaded_engine(&self) -> Option<&EngineHandle> {
        self.inner.engine.get()
    }

    /// The engine for new work: `NotReady` while loading, `ShuttingDown` while draining.
    pub fn engine(&self) -> Result<&EngineHandle, ApiError> {
        if self.is_draining() {
            return Err(ApiError::ShuttingDown);
        }
        self.loaded_engine().ok_or(ApiError::NotReady)
    }

    /// The monitored device, once the engine is loaded.
    pub fn device(&self) -> Option<&DeviceMonitor> {
        self.inner.device.get()
    }

    /// Whether the service takes new work: engine loaded and warmed up, not draining.
    pub fn is_ready(&self) -> bool {
        self.loaded_engine().is_some() && !self.is_draining()
    }

    /// Whether draining started.
    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Stops admitting new work: `/ready` answers 503, the engine refuses new utterances and
    /// [`Self::draining_signal`] subscribers are woken (WebSocket sessions close with 1001).
    pub fn start_draining(&self) {
        self.inner.draining.send_replace(true);
        if let Some(engine) = self.loaded_engine() {
            engine.start_draining();
        }
    }

    /// A receiver that changes to `true` when draining starts.
    pub fn draining_signal(&self) -> watch::Receiver<bool> {
        self.inner.draining.subscribe()
    }

    /// Utterances in flight (slots in use).
    pub fn in_flight(&self) -> usize {
        self.loaded_engine().map_or(0, EngineHandle::slots_used)
    }

    /// Refreshes the gauges that are read at scrape time (slots, device statistics).
    pub fn refresh_gauges(&self) {
        let metrics = &self.inner.metrics;
        if let Some(engine) = self.loaded_engine() {
            metrics.record_slots(engine.slots_used(), engine.slots_total());
            metrics
                .capacity
                .admissions(engine.admitted(), engine.refused());
        }
        if let Some(device) = self.device() {
            metrics.device.update(&device.stats());
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks();
            metrics
                .runtime_alive_tasks
                .set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        if let Some(bytes) = crate::memory_release::heap_in_use_bytes() {
            metrics
                .heap_in_use_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_an_engine_then_draining_wins() {
        let state = AppState::new(Settings::default()).unwrap();
        assert!(!state.is_ready());
        assert_eq!(state.engine().err(), Some(ApiError::NotReady));
        let mut rx = state.draining_signal();
        state.start_draining();
        assert!(state.is_draining());
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        assert_eq!(state.engine().err(), Some(ApiError::ShuttingDown));
        assert_eq!(state.in_flight(), 0);
    }
}
