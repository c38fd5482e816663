//! The model thread: owns the runtime and the active utterances, takes commands from a bounded
//! channel, and advances every runnable utterance by one frame per round, all of them in one
//! batched round of the model (so a cancel or a disconnect takes effect within one frame, a new
//! utterance gets its first frame in the next round, and an utterance waiting for text sits
//! rounds out without holding them up). Each round's time feeds the capacity model that sets
//! the number of slots. Candle work never runs on an async runtime. A round that fails because
//! the device ran out of memory is retried once after the device's cached buffers are
//! released; a round that still fails is run utterance by utterance, so only the utterance at
//! fault fails.
//!
//! The thread is supervised: it stamps a heartbeat every loop; every command and every round
//! runs under a panic guard (a panic fails the utterance concerned, or those of the round, and
//! the thread goes on); it handles at most `commands_per_round` commands between two rounds so
//! frames keep flowing under a flood of commands; an utterance that waits for text longer than
//! `text_wait_timeout` is ended; and after [`FATAL_FAILED_ROUNDS`] rounds in a row in which every
//! utterance failed on the device, the device is taken as broken for good: every utterance
//! fails and the thread ends, dead, so that the service can be restarted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use tracing::{debug, error, info, warn};
use vv_device::fallback::retry_after_clear_cache;
use vv_device::ops::{BackendOps, CandleOps};
use vv_model::generation::{step_round, warmup, GenerationParams, StepOutcome, Utterance};
use vv_model::graphs::MAX_BATCH;
use vv_model::sampler::GaussianNoise;
use vv_model::{ModelError, VibeVoiceModel};

use crate::capacity::CapacityModel;
use crate::command::{Command, UtteranceId};
use crate::error::EngineError;
use crate::events::{FinishReason, UtteranceEvent};
use crate::faults::Faults;
use crate::health::Heartbeat;
use crate::observer::EngineObserver;
use crate::outbox::{Outbox, Queued};
use crate::runtime::Runtime;
use crate::slots::{SlotGuard, Slots};
use crate::stages::StageTimes;

use crate::handle::SHORT_TEXT_WORDS;
/// How often an idle thread wakes up (to notice a dropped client, stamp its heartbeat and end
/// utterances that waited too long for text).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Rounds in a row in which every utterance failed on the device after which the device is
/// taken as broken for good.
const FATAL_FAILED_ROUNDS: usize = 3;

/// The error code of a failure of the device (candle) while stepping.
const DEVICE_ERROR: &str = "compute_error";

/// Generation defaults that requests do not set, and the thread's own bounds.
pub(crate) struct WorkerLimits {
    pub max_frames_per_token: usize,
    pub text_wait_timeout: Duration,
    pub commands_per_round: usize,
}

struct Active {
    id: UtteranceId,
    utt: Utterance,
    outbox: Outbox,
    _slot: SlotGuard,
    queued_at: Option<Instant>,
    stages: Arc<StageTimes>,
    starved: bool,
    /// Since when it waits for text (starved with its input still open).
    waiting_since: Option<Instant>,
}

pub(crate) struct Worker {
    runtime: Runtime,
    commands: Receiver<Command>,
    observer: Arc<dyn EngineObserver>,
    limits: WorkerLimits,
    capacity: Arc<CapacityModel>,
    slots: Arc<Slots>,
    heartbeat: Arc<Heartbeat>,
    faults: Arc<dyn Faults>,
    /// In arrival order.
    active: Vec<Active>,
    /// Rounds in a row in which every utterance failed on the device.
    failed_rounds: usize,
}

impl Worker {
    // Internal constructor called once, from `start_engine_with_faults`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        runtime: Runtime,
        commands: Receiver<Command>,
        observer: Arc<dyn EngineObserver>,
        limits: WorkerLimits,
        capacity: Arc<CapacityModel>,
        slots: Arc<Slots>,
        heartbeat: Arc<Heartbeat>,
        faults: Arc<dyn Faults>,
    ) -> Self {
        Self {
            runtime,
            commands,
            observer,
            limits,
            capacity,
            slots,
            heartbeat,
            faults,
            active: Vec::new(),
            failed_rounds: 0,
        }
    }

    /// Runs the warmup generation on this thread and its compute pool, where requests run:
    /// warmed on another thread, the first round here still paid for this thread's and pool's
    /// first use (a median 1.7 ms of the first request's first audio on two CPU cores,
    /// docs/benchmarks.md session 18).
    pub(crate) fn warm_up(&self) -> vv_model::Result<Duration> {
        let voice = &self.runtime.voices[&self.runtime.info.default_voice];
        warmup(&self.runtime.model, voice)
    }

    /// Runs until a `Shutdown` command or until every handle is gone (returns `true`: a clean
    /// stop), or until the device is broken for good (returns `false`).
    pub(crate) fn run(mut self) -> bool {
        loop {
            self.heartbeat.beat();
            let runnable = self.active.iter().any(|a| !a.starved);
            let first = if runnable {
                self.commands.try_recv().ok()
            } else {
                self.runtime.model.rest();
                match self.commands.recv_timeout(IDLE_POLL) {
                    Ok(cmd) => Some(cmd),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return true,
                }
            };
            let mut next = first;
            let mut handled = 0;
            while let Some(cmd) = next {
                if matches!(cmd, Command::Shutdown) {
                    self.cancel_all();
                    return true;
                }
                self.handle_guarded(cmd);
                handled += 1;
                next = if handled < self.limits.commands_per_round {
                    self.commands.try_recv().ok()
                } else {
                    None
                };
            }
            self.expire_text_waits();
            self.drop_disconnected();
            if let Some(broken) = self.round_guarded() {
                error!(code = broken.code(), error = %broken, "the device keeps failing; stopping the model thread");
                let ids: Vec<UtteranceId> = self.active.iter().map(|a| a.id).collect();
                for id in ids {
                    self.remove(id, |_| UtteranceEvent::Failed(broken.clone()));
                }
                return false;
            }
        }
    }

    /// Handles a command under a panic guard: a panic fails the utterance concerned (when it
    /// is active; a `Start` that panics drops its slot and its event queue) and the thread
    /// goes on.
    fn handle_guarded(&mut self, cmd: Command) {
        let id = cmd.utterance();
        let faults = Arc::clone(&self.faults);
        let handled = catch_unwind(AssertUnwindSafe(|| {
            faults.command();
            self.handle(cmd);
        }));
        if handled.is_err() {
            error!(id, "handling a command panicked; failing its utterance");
            if let Some(id) = id {
                self.fail(
                    id,
                    EngineError::internal("the engine failed on this utterance"),
                );
            }
        }
    }

    /// One round under a panic guard: a panic outside the steps (which have their own guard)
    /// fails every utterance of the round. Returns the error when the device is broken for
    /// good.
    fn round_guarded(&mut self) -> Option<EngineError> {
        match catch_unwind(AssertUnwindSafe(|| self.round())) {
            Ok(broken) => broken,
            Err(_) => {
                error!("a round panicked; failing its utterances");
                let ids: Vec<UtteranceId> = self
                    .active
                    .iter()
                    .filter(|a| !a.starved)
                    .map(|a| a.id)
                    .collect();
                for id in ids {
                    self.fail(
                        id,
                        EngineError::internal("the engine failed on this utterance"),
                    );
                }
                None
            }
        }
    }

    /// Ends the utterances that waited for text longer than `text_wait_timeout`.
    fn expire_text_waits(&mut self) {
        let limit = self.limits.text_wait_timeout;
        let expired: Vec<UtteranceId> = self
            .active
            .iter()
            .filter(|a| a.waiting_since.is_some_and(|t| t.elapsed() >= limit))
            .map(|a| a.id)
            .collect();
        for id in expired {
            info!(id, "no text in time; ending the utterance");
            self.remove(id, |_| {
                UtteranceEvent::Failed(EngineError::TextWaitTimeout {
                    secs: limit.as_secs(),
                })
            });
        }
    }

    fn get(&mut self, id: UtteranceId) -> Option<&mut Active> {
        self.active.iter_mut().find(|a| a.id == id)
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start {
                id,
                voice,
                params,
                outbox,
                slot,
                stages,
            } => self.start(id, &voice, params, outbox, slot, stages),
            Command::Tokens { id, ids } => self.tokens(id, &ids),
            Command::Close {
                id,
                ids,
                short_text,
            } => self.close(id, &ids, short_text),
            Command::Cancel { id } => self.remove(id, |a| UtteranceEvent::Cancelled {
                frames: a.utt.frames() as u32,
            }),
            Command::Shutdown => {}
        }
    }

    fn start(
        &mut self,
        id: UtteranceId,
        voice: &str,
        params: crate::params::SynthesisParams,
        mut outbox: Outbox,
        slot: SlotGuard,
        stages: Arc<StageTimes>,
    ) {
        let Some(prepared) = self.runtime.voices.get(voice) else {
            outbox.fail(EngineError::UnknownVoice(voice.to_string()));
            return;
        };
        let gen = GenerationParams {
            cfg_scale: params.cfg_scale as f32,
            diffusion_steps: params.diffusion_steps,
            solver: params.solver,
            eos_enabled: !self.runtime.info.model.random_weights,
            max_frames_per_token: self.limits.max_frames_per_token,
            max_frames: None,
        };
        let seed = params.seed.unwrap_or_else(rand::random);
        let noise = Box::new(GaussianNoise::new(seed));
        match Utterance::new(&self.runtime.model, prepared, gen, noise) {
            Ok(utt) => {
                debug!(id, voice, seed, "utterance started");
                self.active.push(Active {
                    id,
                    utt,
                    outbox,
                    _slot: slot,
                    queued_at: Some(stages.admitted()),
                    stages,
                    starved: true,
                    waiting_since: Some(Instant::now()),
                });
            }
            Err(e) => outbox.fail(e.into()),
        }
    }

    fn tokens(&mut self, id: UtteranceId, ids: &[u32]) {
        if let Some(a) = self.get(id) {
            if !ids.is_empty() {
                a.utt.push_tokens(ids);
                a.starved = false;
                a.waiting_since = None;
            }
        }
    }

    fn close(&mut self, id: UtteranceId, ids: &[u32], short_text: bool) {
        let Some(a) = self.get(id) else {
            return;
        };
        a.utt.push_tokens(ids);
        a.utt.close_input();
        a.starved = false;
        a.waiting_since = None;
        if short_text {
            a.outbox.event(UtteranceEvent::Warning {
                code: "short_text",
                message: format!(
                    "texts of {SHORT_TEXT_WORDS} words or fewer may be synthesised unstably"
                ),
            });
        }
    }

    fn fail(&mut self, id: UtteranceId, error: EngineError) {
        warn!(id, code = error.code(), error = %error, "utterance failed");
        self.remove(id, |_| UtteranceEvent::Failed(error));
    }

    /// Removes an utterance (freeing its slot) after queueing its terminal event.
    /// The slot is released before the event is queued, so a client that starts new work as
    /// soon as it reads the terminal event finds the slot free.
    fn remove(&mut self, id: UtteranceId, terminal: impl FnOnce(&Active) -> UtteranceEvent) {
        if let Some(pos) = self.active.iter().position(|a| a.id == id) {
            let a = self.active.remove(pos);
            // Before the slot goes: whoever sees the slot free sees the caches gone too.
            self.report_kv_cache();
            let ev = terminal(&a);
            let Active {
                mut outbox,
                _slot: slot,
                ..
            } = a;
            drop(slot);
            outbox.event(ev);
        }
    }

    /// Reports the KV-cache bytes the active utterances own.
    fn report_kv_cache(&self) {
        let bytes = self.active.iter().map(|a| a.utt.kv_bytes()).sum();
        self.observer.kv_cache(bytes);
    }

    fn cancel_all(&mut self) {
        let ids: Vec<UtteranceId> = self.active.iter().map(|a| a.id).collect();
        for id in ids {
            self.remove(id, |a| UtteranceEvent::Cancelled {
                frames: a.utt.frames() as u32,
            });
        }
    }

    /// Cancels utterances whose client dropped its handle.
    fn drop_disconnected(&mut self) {
        let gone: Vec<UtteranceId> = self
            .active
            .iter()
            .filter(|a| a.outbox.is_closed())
            .map(|a| a.id)
            .collect();
        for id in gone {
            debug!(id, "client gone; cancelling");
            self.remove(id, |a| UtteranceEvent::Cancelled {
                frames: a.utt.frames() as u32,
            });
        }
    }

    /// Advances every runnable utterance by one frame in one batched round (in parts of
    /// [`MAX_BATCH`] beyond that), then hands out the outcomes and updates the capacity.
    /// Returns the error when this was the [`FATAL_FAILED_ROUNDS`]th round in a row in which
    /// every utterance failed on the device.
    fn round(&mut self) -> Option<EngineError> {
        let started = Instant::now();
        let (model, device) = (&self.runtime.model, &self.runtime.device);
        let faults = self.faults.as_ref();
        let observer = &self.observer;
        let mut ids = Vec::new();
        let mut utts: Vec<&mut Utterance> = Vec::new();
        for a in self.active.iter_mut().filter(|a| !a.starved) {
            if let Some(q) = a.queued_at.take() {
                observer.queue_wait(q.elapsed());
            }
            ids.push(a.id);
            utts.push(&mut a.utt);
        }
        if ids.is_empty() {
            return None;
        }
        let outcomes: Vec<Result<StepOutcome, EngineError>> = utts
            .chunks_mut(MAX_BATCH)
            .flat_map(|part| step_part(model, device, faults, part))
            .collect();
        drop(utts);
        let device_failure = outcomes
            .iter()
            .all(|o| matches!(o, Err(EngineError::Model { code, .. }) if *code == DEVICE_ERROR))
            .then(|| outcomes.first().and_then(|o| o.as_ref().err().cloned()))
            .flatten();
        self.failed_rounds = if device_failure.is_some() {
            self.failed_rounds + 1
        } else {
            0
        };
        let produced = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(StepOutcome::Frame { .. })))
            .count();
        let mut first_audio = false;
        for (id, outcome) in ids.iter().zip(outcomes) {
            first_audio |= self.dispatch(*id, outcome, started);
        }
        if first_audio {
            // The connections waiting for a first frame were just woken; on a machine whose
            // cores are all busy (the model's own workers, clients), the next round would
            // otherwise run before them. One yield per such round lets them send it first:
            // 1.5 ms sooner first audio for word-by-word streams on two cores
            // (docs/benchmarks.md, session 17); nothing to yield to costs a system call.
            std::thread::yield_now();
        }
        let elapsed = started.elapsed();
        if produced > 0 {
            self.observer.step(elapsed, ids.len());
            self.capacity.observe(ids.len(), elapsed);
            let capacity = self.capacity.capacity();
            self.slots.set_total(capacity);
            self.observer
                .capacity(capacity, self.capacity.headroom_at(ids.len()));
        }
        self.report_kv_cache();
        device_failure.filter(|_| self.failed_rounds >= FATAL_FAILED_ROUNDS)
    }

    /// Hands one utterance's outcome of a round (begun at `started`) to its client; true when
    /// that was its first frame.
    fn dispatch(
        &mut self,
        id: UtteranceId,
        outcome: Result<StepOutcome, EngineError>,
        started: Instant,
    ) -> bool {
        let Some(a) = self.get(id) else {
            return false;
        };
        let mut first = false;
        match outcome {
            Ok(StepOutcome::Frame { audio, last }) => {
                let seq = (a.utt.frames() - 1) as u32;
                first = seq == 0;
                a.stages.frame(started);
                let queued = a.outbox.audio(UtteranceEvent::Audio {
                    seq,
                    samples: audio.into(),
                    text_tokens: a.utt.consumed_tokens() as u32,
                });
                match queued {
                    Queued::Ok if last => {
                        let reason = a.utt.stop_reason().unwrap_or(FinishReason::Eos);
                        self.remove(id, |a| UtteranceEvent::Finished {
                            reason,
                            frames: a.utt.frames() as u32,
                        });
                    }
                    Queued::Ok => {}
                    Queued::SlowConsumer => self.fail(id, EngineError::SlowConsumer),
                    Queued::Disconnected => self.remove(id, |a| UtteranceEvent::Cancelled {
                        frames: a.utt.frames() as u32,
                    }),
                }
            }
            Ok(StepOutcome::NeedText) => {
                a.starved = true;
                a.waiting_since.get_or_insert_with(Instant::now);
                self.observer.text_starved();
            }
            Ok(StepOutcome::Finished(reason)) => {
                self.remove(id, |a| UtteranceEvent::Finished {
                    reason,
                    frames: a.utt.frames() as u32,
                });
            }
            Err(e) => self.fail(id, e),
        }
        first
    }
}

/// One batched round of `utts`; when it fails (after the out-of-memory retry) each utterance
/// is stepped alone, so that only the one at fault fails.
fn step_part(
    model: &VibeVoiceModel,
    device: &Device,
    faults: &dyn Faults,
    utts: &mut [&mut Utterance],
) -> Vec<Result<StepOutcome, EngineError>> {
    let round = || {
        faults.step()?;
        step_round(model, utts)
    };
    match guarded(|| step_with_retry(&CandleOps, device, round)) {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(error) if utts.len() == 1 => vec![Err(error)],
        Err(error) => {
            warn!(error = %error, batch = utts.len(), "a batched round failed; stepping its utterances one by one");
            utts.iter_mut()
                .map(|u| {
                    let step = || {
                        faults.step()?;
                        u.step(model)
                    };
                    guarded(|| step_with_retry(&CandleOps, device, step))
                })
                .collect()
        }
    }
}

/// Runs `f`, turning its model error or panic into the engine's error.
fn guarded<T>(f: impl FnOnce() -> vv_model::Result<T>) -> Result<T, EngineError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(EngineError::internal(
            "the model panicked on this utterance",
        )),
    }
}

/// Runs `step`; when it fails because `device` ran out of memory (as
/// [`vv_device::fallback::classify`] reads candle's error), releases the device's cached buffers
/// through `ops` and runs it once more. Other errors, and the second attempt's, are returned.
fn step_with_retry<T>(
    ops: &dyn BackendOps,
    device: &Device,
    mut step: impl FnMut() -> vv_model::Result<T>,
) -> vv_model::Result<T> {
    // Only candle errors come from the device; the retry helper sees those and passes every
    // other outcome through untouched.
    let outcome = retry_after_clear_cache(ops, device, || match step() {
        Err(ModelError::Candle(error)) => Err(error),
        other => Ok(other),
    });
    outcome.unwrap_or_else(|error| Err(ModelError::Candle(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Error;
    use vv_device::backend::Backend;
    use vv_device::ops::{BackendOp, RecordingOps};

    fn candle(message: &str) -> ModelError {
        ModelError::Candle(Error::Msg(message.to_string()))
    }

    /// Runs `step_with_retry` over a scripted sequence of step results; returns the outcome,
    /// how many steps ran and the backend operations issued.
    fn run(
        backend: Backend,
        script: Vec<vv_model::Result<StepOutcome>>,
    ) -> (vv_model::Result<StepOutcome>, usize, Vec<BackendOp>) {
        let ops = RecordingOps::new(backend);
        let mut script = script.into_iter();
        let mut steps = 0;
        let outcome = step_with_retry(&ops, &Device::Cpu, || {
            steps += 1;
            script.next().unwrap_or(Ok(StepOutcome::NeedText))
        });
        let calls = ops.calls().iter().map(|c| c.op).collect();
        (outcome, steps, calls)
    }

    #[test]
    fn out_of_memory_clears_the_cache_and_steps_once_more() {
        let (outcome, steps, calls) = run(
            Backend::Metal,
            vec![
                Err(candle("Failed to create metal resource: Buffer")),
                Ok(StepOutcome::Frame {
                    audio: vec![0.25; 4],
                    last: false,
                }),
            ],
        );
        assert!(
            matches!(outcome, Ok(StepOutcome::Frame { ref audio, last: false }) if audio == &[0.25; 4])
        );
        assert_eq!(steps, 2);
        assert_eq!(calls, [BackendOp::ClearCache]);
    }

    #[test]
    fn a_second_out_of_memory_is_returned_after_one_retry() {
        let (outcome, steps, calls) = run(
            Backend::Cuda,
            vec![
                Err(candle(
                    "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
                )),
                Err(candle("CUDA_ERROR_OUT_OF_MEMORY")),
            ],
        );
        let error = outcome.unwrap_err();
        assert_eq!(error.code(), "compute_error");
        assert!(
            error.to_string().contains("CUDA_ERROR_OUT_OF_MEMORY"),
            "{error}"
        );
        assert_eq!(steps, 2);
        assert_eq!(calls, [BackendOp::ClearCache]);
    }

    #[test]
    fn other_failures_and_successes_are_not_retried() {
        let cases = vec![
            Err(candle("shape mismatch in matmul")),
            Err(candle("Metal conv1d F16 not implemented")),
            // Not a device error, whatever its text says.
            Err(ModelError::InvalidInput("out of memory".into())),
            Ok(StepOutcome::NeedText),
        ];
        for case in cases {
            let expected_err = case.as_ref().err().map(ToString::to_string);
            let (outcome, steps, calls) = run(Backend::Metal, vec![case]);
            assert_eq!(outcome.err().map(|e| e.to_string()), expected_err);
            assert_eq!(steps, 1);
            assert!(calls.is_empty(), "{calls:?}");
        }
    }
}
