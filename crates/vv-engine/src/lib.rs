//! The runtime around the model: a dedicated model thread per device fed by bounded channels,
//! utterance slots with fail-fast admission, cancellation at frame boundaries, metric hooks.
//! No async runtime: clients read events through runtime-agnostic channels.

mod calibrate;
pub mod capacity;
mod command;
mod compute_pool;
pub mod error;
pub mod events;
pub mod faults;
pub mod handle;
pub mod health;
pub mod info;
pub mod observer;
pub mod options;
pub mod outbox;
pub mod params;
pub mod runtime;
pub mod slots;
pub mod stages;
mod text_feed;
mod worker;

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

pub use capacity::{CapacityModel, CapacityReport, SlotPolicy};
pub use error::EngineError;
pub use events::{FinishReason, UtteranceEvent};
pub use faults::{Faults, NoFaults};
pub use handle::{EngineHandle, UtteranceHandle};
pub use health::EngineHealth;
pub use info::{EngineInfo, ModelSummary};
pub use observer::{EngineObserver, NoopObserver};
pub use options::EngineOptions;
pub use params::SynthesisParams;
pub use runtime::{LoadError, Runtime};
pub use stages::StageTimes;

use compute_pool::model_pool;
use health::{ExitGuard, Heartbeat};
use slots::Slots;
use worker::{Worker, WorkerLimits};

/// Commands queued for the model thread at most (text pieces, closes, cancels, starts).
pub const COMMAND_QUEUE: usize = 4096;

/// Starts the model thread on a loaded runtime and returns the handle clients use. The
/// capacity model is calibrated first (see `calibrate`): with automatic slots the number of
/// slots starts from its measurements.
pub fn start_engine(
    runtime: Runtime,
    opts: &EngineOptions,
    observer: Arc<dyn EngineObserver>,
) -> Result<EngineHandle, LoadError> {
    start_engine_with_faults(runtime, opts, observer, Arc::new(NoFaults))
}

/// [`start_engine`] with a fault seam: `faults` is called before every command and step of the
/// model thread (tests make it panic, hang or fail; serving engines use [`NoFaults`]).
pub fn start_engine_with_faults(
    runtime: Runtime,
    opts: &EngineOptions,
    observer: Arc<dyn EngineObserver>,
    faults: Arc<dyn Faults>,
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
    let mut info = runtime.info.clone();
    let device = runtime.device.clone();
    let tokenizer = Arc::clone(&runtime.tokenizer);
    let limits = WorkerLimits {
        max_frames_per_token: opts.max_frames_per_token,
        text_wait_timeout: opts.text_wait_timeout,
        commands_per_round: opts.commands_per_round.max(1),
    };
    let heartbeat = Heartbeat::new();
    let worker = Worker::new(
        runtime,
        rx,
        observer,
        limits,
        Arc::clone(&capacity),
        Arc::clone(&slots),
        Arc::clone(&heartbeat),
        faults,
    );
    let guard = ExitGuard(Arc::clone(&heartbeat));
    let pool = model_pool()?;
    // The engine is returned once the model thread is warm (with warmup on), so readiness
    // means the first request finds the thread and its pool as later ones do.
    let warm = opts.warmup;
    let (warmed_tx, warmed) = sync_channel(1);
    std::thread::Builder::new()
        .name("vv-model".into())
        .spawn(move || {
            let clean = pool.install(|| {
                let took = match warm.then(|| worker.warm_up()).transpose() {
                    Ok(took) => took,
                    Err(e) => {
                        let _ = warmed_tx.send(Err(e));
                        return false;
                    }
                };
                let _ = warmed_tx.send(Ok(took));
                worker.run()
            });
            guard.finish(clean);
        })
        .map_err(model_thread_error)?;
    let took = match warmed.recv() {
        Ok(Ok(took)) => took,
        Ok(Err(e)) => return Err(LoadError::Model(e)),
        Err(_) => {
            let why = std::io::Error::other("the model thread ended during its warmup");
            return Err(model_thread_error(why));
        }
    };
    if let Some(took) = took {
        info!(seconds = took.as_secs_f64(), device = %info.device.device, "warmup done");
    }
    info.model.warmup_seconds = took.map(|t| t.as_secs_f64());
    let info = Arc::new(info);
    Ok(EngineHandle::new(
        tx,
        tokenizer,
        slots,
        capacity,
        info,
        device,
        opts.max_buffered_frames,
        heartbeat,
        opts.stall_timeout,
    ))
}

/// The model thread could not be started or warmed.
fn model_thread_error(source: std::io::Error) -> LoadError {
    LoadError::Model(vv_model::ModelError::Io {
        path: "model thread".into(),
        source,
    })
}

/// Loads a runtime (device, model, tokenizer, voices, warmup) and starts its model thread.
pub fn load_engine(
    opts: &EngineOptions,
    probe: &dyn vv_device::probe::DeviceProbe,
    observer: Arc<dyn EngineObserver>,
) -> Result<EngineHandle, LoadError> {
    load_engine_with_faults(opts, probe, observer, Arc::new(NoFaults))
}

/// [`load_engine`] with the fault seam of [`start_engine_with_faults`].
pub fn load_engine_with_faults(
    opts: &EngineOptions,
    probe: &dyn vv_device::probe::DeviceProbe,
    observer: Arc<dyn EngineObserver>,
    faults: Arc<dyn Faults>,
) -> Result<EngineHandle, LoadError> {
    start_engine_with_faults(Runtime::load(opts, probe)?, opts, observer, faults)
}
