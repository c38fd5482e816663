//! The model thread: owns the runtime and the active utterances, takes commands from a bounded
//! channel, and advances every runnable utterance by one frame per round (so a cancel or a
//! disconnect takes effect within one frame). Candle work never runs on an async runtime.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use vv_model::generation::{GenerationParams, StepOutcome, Utterance};
use vv_model::sampler::GaussianNoise;
use vv_model::text::IncrementalTokenizer;

use crate::command::{Command, UtteranceId};
use crate::error::EngineError;
use crate::events::{FinishReason, UtteranceEvent};
use crate::observer::EngineObserver;
use crate::outbox::{Outbox, Queued};
use crate::runtime::Runtime;
use crate::slots::SlotGuard;

/// Texts of at most this many words get a `short_text` warning (the model is unstable there).
const SHORT_TEXT_WORDS: usize = 3;
/// How often an idle thread wakes up to notice a dropped client.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Generation defaults that requests do not set.
pub(crate) struct WorkerLimits {
    pub max_frames_per_token: usize,
}

struct Active {
    utt: Utterance,
    text: IncrementalTokenizer,
    words: usize,
    outbox: Outbox,
    _slot: SlotGuard,
    queued_at: Option<Instant>,
    starved: bool,
}

pub(crate) struct Worker {
    runtime: Runtime,
    commands: Receiver<Command>,
    observer: Arc<dyn EngineObserver>,
    limits: WorkerLimits,
    active: HashMap<UtteranceId, Active>,
    order: Vec<UtteranceId>,
}

impl Worker {
    pub(crate) fn new(
        runtime: Runtime,
        commands: Receiver<Command>,
        observer: Arc<dyn EngineObserver>,
        limits: WorkerLimits,
    ) -> Self {
        Self {
            runtime,
            commands,
            observer,
            limits,
            active: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Runs until a `Shutdown` command or until every handle is gone.
    pub(crate) fn run(mut self) {
        loop {
            let runnable = self.order.iter().any(|id| self.is_runnable(*id));
            let first = if runnable {
                self.commands.try_recv().ok()
            } else {
                match self.commands.recv_timeout(IDLE_POLL) {
                    Ok(cmd) => Some(cmd),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            let mut next = first;
            while let Some(cmd) = next {
                if matches!(cmd, Command::Shutdown) {
                    self.cancel_all();
                    return;
                }
                self.handle(cmd);
                next = self.commands.try_recv().ok();
            }
            self.drop_disconnected();
            self.round();
        }
    }

    fn is_runnable(&self, id: UtteranceId) -> bool {
        self.active.get(&id).is_some_and(|a| !a.starved)
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start {
                id,
                voice,
                params,
                outbox,
                slot,
                queued_at,
            } => self.start(id, &voice, params, outbox, slot, queued_at),
            Command::Text { id, text } => self.text(id, &text),
            Command::Close { id } => self.close(id),
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
        queued_at: Instant,
    ) {
        let Some(prepared) = self.runtime.voices.get(voice) else {
            outbox.fail(EngineError::UnknownVoice(voice.to_string()));
            return;
        };
        let gen = GenerationParams {
            cfg_scale: params.cfg_scale as f32,
            diffusion_steps: params.diffusion_steps,
            solver: params.solver,
            eos_enabled: true,
            max_frames_per_token: self.limits.max_frames_per_token,
            max_frames: None,
        };
        let seed = params.seed.unwrap_or_else(rand::random);
        let noise = Box::new(GaussianNoise::new(seed));
        match Utterance::new(&self.runtime.model, prepared, gen, noise) {
            Ok(utt) => {
                debug!(id, voice, seed, "utterance started");
                self.active.insert(
                    id,
                    Active {
                        utt,
                        text: IncrementalTokenizer::new(),
                        words: 0,
                        outbox,
                        _slot: slot,
                        queued_at: Some(queued_at),
                        starved: true,
                    },
                );
                self.order.push(id);
            }
            Err(e) => outbox.fail(e.into()),
        }
    }

    fn text(&mut self, id: UtteranceId, text: &str) {
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        a.words += text.split_whitespace().count();
        match a.text.push(&self.runtime.tokenizer, text) {
            Ok(ids) => {
                if !ids.is_empty() {
                    a.utt.push_tokens(&ids);
                    a.starved = false;
                }
            }
            Err(e) => self.fail(id, e.into()),
        }
    }

    fn close(&mut self, id: UtteranceId) {
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        match a.text.finish(&self.runtime.tokenizer) {
            Ok(ids) => {
                a.utt.push_tokens(&ids);
                a.utt.close_input();
                a.starved = false;
                if a.words > 0 && a.words <= SHORT_TEXT_WORDS {
                    a.outbox.event(UtteranceEvent::Warning {
                        code: "short_text",
                        message: format!(
                            "texts of {SHORT_TEXT_WORDS} words or fewer may be synthesised unstably"
                        ),
                    });
                }
            }
            Err(e) => self.fail(id, e.into()),
        }
    }

    fn fail(&mut self, id: UtteranceId, error: EngineError) {
        warn!(id, code = error.code(), error = %error, "utterance failed");
        self.remove(id, |_| UtteranceEvent::Failed(error));
    }

    /// Removes an utterance (freeing its slot) after queueing its terminal event.
    fn remove(&mut self, id: UtteranceId, terminal: impl FnOnce(&Active) -> UtteranceEvent) {
        if let Some(mut a) = self.active.remove(&id) {
            let ev = terminal(&a);
            a.outbox.event(ev);
        }
        self.order.retain(|x| *x != id);
    }

    fn cancel_all(&mut self) {
        for id in self.order.clone() {
            self.remove(id, |a| UtteranceEvent::Cancelled {
                frames: a.utt.frames() as u32,
            });
        }
    }

    /// Cancels utterances whose client dropped its handle.
    fn drop_disconnected(&mut self) {
        let gone: Vec<UtteranceId> = self
            .order
            .iter()
            .copied()
            .filter(|id| self.active.get(id).is_some_and(|a| a.outbox.is_closed()))
            .collect();
        for id in gone {
            debug!(id, "client gone; cancelling");
            self.remove(id, |a| UtteranceEvent::Cancelled {
                frames: a.utt.frames() as u32,
            });
        }
    }

    /// Advances every runnable utterance by one frame.
    fn round(&mut self) {
        let started = Instant::now();
        let mut produced = 0;
        for id in self.order.clone() {
            if self.is_runnable(id) && self.advance(id) {
                produced += 1;
            }
        }
        if produced > 0 {
            self.observer.step(started.elapsed(), produced);
        }
    }

    /// One step of one utterance; true when it produced a frame.
    fn advance(&mut self, id: UtteranceId) -> bool {
        let model = &self.runtime.model;
        let Some(a) = self.active.get_mut(&id) else {
            return false;
        };
        if let Some(q) = a.queued_at.take() {
            self.observer.queue_wait(q.elapsed());
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| a.utt.step(model)));
        match outcome {
            Ok(Ok(StepOutcome::Frame { audio, last })) => {
                let seq = (a.utt.frames() - 1) as u32;
                let queued = a.outbox.audio(UtteranceEvent::Audio {
                    seq,
                    samples: audio.into(),
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
                true
            }
            Ok(Ok(StepOutcome::NeedText)) => {
                a.starved = true;
                self.observer.text_starved();
                false
            }
            Ok(Ok(StepOutcome::Finished(reason))) => {
                self.remove(id, |a| UtteranceEvent::Finished {
                    reason,
                    frames: a.utt.frames() as u32,
                });
                false
            }
            Ok(Err(e)) => {
                self.fail(id, e.into());
                false
            }
            Err(_) => {
                self.fail(
                    id,
                    EngineError::Model {
                        code: "internal_error",
                        message: "the model panicked on this utterance".into(),
                    },
                );
                false
            }
        }
    }
}
