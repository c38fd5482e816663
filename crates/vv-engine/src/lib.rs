//! The runtime around the model: a dedicated model thread per device fed by bounded channels,
//! utterance slots with fail-fast admission, cancellation at frame boundaries, metric hooks.
//! No async runtime: clients read events through runtime-agnostic channels.

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

/// Starts the model thread on a loaded runtime and returns the handle clients use.
pub fn start_engine(
    runtime: Runtime,
    opts: &EngineOptions,
    observer: Arc<dyn EngineObserver>,
) -> std::io::Result<EngineHandle> {
    let (tx, rx) = sync_channel(COMMAND_QUEUE);
    let slots = Slots::new(opts.slots);
    let info = Arc::new(runtime.info.clone());
    let device = runtime.device.clone();
    let limits = WorkerLimits {
        max_frames_per_token: opts.max_frames_per_token,
    };
    let worker = Worker::new(runtime, rx, observer, limits);
    std::thread::Builder::new()
        .name("vv-model".into())
        .spawn(move || worker.run())?;
    Ok(EngineHandle::new(
        tx,
        slots,
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
    let runtime = Runtime::load(opts, probe)?;
    start_engine(runtime, opts, observer).map_err(|e| {
        LoadError::Model(vv_model::ModelError::Io {
            path: "model thread".into(),
            source: e,
        })
    })
}
