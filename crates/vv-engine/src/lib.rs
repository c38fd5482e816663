//! The runtime around the model: a dedicated model thread per device fed by bounded channels,
//! utterance slots with fail-fast admission, cancellation at frame boundaries, metric hooks.
//! No async runtime: clients read events through runtime-agnostic channels.

mod calibrate;
pub mod capacity;
mod command;
pub mod error;
pub mod events;
pub mod handle;
pub mod info;
pub mod observer;
pub mod options;
pub mod outbox;
pub mod params;
pub mod runtime;
pub mod slots;
mod worker;

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

pub use capacity::{CapacityModel, CapacityReport, SlotPolicy};
pub use error::EngineError;
pub use events::{FinishReason, UtteranceEvent};
pub use handle::{EngineHandle, UtteranceHandle};
pub use info::{EngineInfo, ModelSummary};
pub use observer::{EngineObserver, NoopObserver};
pub use options::EngineOptions;
pub use params::SynthesisParams;
pub use runtime::{LoadError, Runtime};

use slots::Slots;
use worker::{Worker, WorkerLimits};

/// Commands queued for the model thread at most (text pieces, closes, cancels, starts).
const COMMAND_QUEUE: usize = 4096;

/// Starts the model thread on a loaded runtime and returns the handle clients use. The
/// capacity model is calibrated first (see `calibrate`): with automatic slots the number of
/// slots starts from its measurements.
pub fn start_engine(
    runtime: Runtime,
    opts: &EngineOptions,
    observer: Arc<dyn EngineObserver>,
) -> Result<EngineHandle, LoadError> {
    let (tx, rx) = sync_channel(COMMAND_QUEUE);
    let frame = runtime.info.model.frame_samples as f64 / f64::from(runtime.info.model.sample_rate);
    let capacity = Arc::new(CapacityModel::new(
        opts.slots,
        Duration::from_secs_f64(frame),
    ));
    calibrate::run(&runtime, &capacity, opts)?;
    let slots = Slots::new(capacity.capacity());
    observer.capacity(capacity.capacity(), capacity.headroom_at(1));
    let info = Arc::new(runtime.info.clone());
    let device = runtime.device.clone();
    let tokenizer = Arc::clone(&runtime.tokenizer);
    let limits = WorkerLimits {
        max_frames_per_token: opts.max_frames_per_token,
    };
    let worker = Worker::new(
        runtime,
        rx,
        observer,
        limits,
        Arc::clone(&capacity),
        Arc::clone(&slots),
    );
    std::thread::Builder::new()
        .name("vv-model".into())
        .spawn(move || worker.run())
        .map_err(|e| {
            LoadError::Model(vv_model::ModelError::Io {
                path: "model thread".into(),
                source: e,
            })
        })?;
    Ok(EngineHandle::new(
        tx,
        tokenizer,
        slots,
        capacity,
        info,
        device,
        opts.max_buffered_frames,
    ))
}

/// Loads a runtime (device, model, tokenizer, voices, warmup) and starts its model thread.
pub fn load_engine(
    opts: &EngineOptions,
    probe: &dyn vv_device::probe::DeviceProbe,
    observer: Arc<dyn EngineObserver>,
) -> Result<EngineHandle, LoadError> {
    start_engine(Runtime::load(opts, probe)?, opts, observer)
}
