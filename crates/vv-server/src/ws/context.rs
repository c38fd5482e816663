//! One context: a client-named utterance stream made of segments. A segment is one engine
//! utterance; `flush` closes the segment's input (everything buffered, including a held-back
//! partial word, is synthesised) and the next text starts a new segment. Operations that
//! arrive while a flushed segment is still draining wait in a backlog, so segments never
//! overlap and audio stays in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vv_audio::NATIVE_SAMPLE_RATE;
use vv_engine::{EngineHandle, SynthesisParams, UtteranceEvent, UtteranceHandle};

use super::error::WsError;
use super::events::ServerEvent;
use super::framing::AudioFramer;
use super::session_config::SessionConfig;
use crate::metrics::{ContextRecorder, Metrics, Outcome};

/// What the session must tell the client after an operation on a context.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// A flushed segment is complete: send `flushed`.
    Flushed,
    /// The context is closed and drained: send `context.done` and forget it.
    Done,
    /// Something failed; the context goes on unless the error is fatal.
    Error(WsError),
}

/// A client operation waiting for the current segment to finish.
#[derive(Debug)]
enum Op {
    Text(String),
    Flush,
}

/// The engine utterance of the current segment.
struct Segment {
    utterance: UtteranceHandle,
    input_closed: bool,
}

impl Segment {
    fn close_input(&mut self) -> Result<(), WsError> {
        self.input_closed = true;
        self.utterance.close().map_err(WsError::from)
    }
}

/// One context of a session.
pub struct Context {
    id: String,
    num: u32,
    params: SynthesisParams,
    framer: AudioFramer,
    segment: Option<Segment>,
    backlog: VecDeque<Op>,
    closed: bool,
    flushes_pending: usize,
    chars: usize,
    started: Instant,
    first_audio: Option<Instant>,
    last_input: Instant,
    recorder: ContextRecorder,
}

impl Context {
    /// Creates context `num` with the session's current settings and starts its first
    /// segment (failing with `overloaded` when no slot is free). `now` is when its first text
    /// arrived.
    pub fn open(
        id: String,
        num: u32,
        config: &SessionConfig,
        engine: &EngineHandle,
        metrics: &Arc<Metrics>,
        now: Instant,
    ) -> Result<Self, WsError> {
        let framer = AudioFramer::new(num, config.encoding, config.sample_rate)?;
        let params = config.synthesis_params();
        let utterance = engine.start(params.clone())?;
        Ok(Self {
            id,
            num,
            params,
            framer,
            segment: Some(Segment {
                utterance,
                input_closed: false,
            }),
            backlog: VecDeque::new(),
            closed: false,
            flushes_pending: 0,
            chars: 0,
            started: now,
            first_audio: None,
            last_input: now,
            recorder: metrics.context(now, NATIVE_SAMPLE_RATE),
        })
    }

    /// The `context.created` event.
    pub fn created_event(&self) -> ServerEvent {
        ServerEvent::ContextCreated {
            context_id: self.id.clone(),
            context_num: self.num,
            encoding: self.framer.encoding().as_str(),
            sample_rate: self.framer.sample_rate(),
        }
    }

    /// Appends text; at most `max_chars` characters per context are accepted.
    pub fn text(
        &mut self,
        engine: &EngineHandle,
        text: &str,
        max_chars: usize,
        now: Instant,
    ) -> Result<Vec<Emit>, WsError> {
        self.check_open()?;
        let chars = self.chars + text.chars().count();
        if chars > max_chars {
            return Err(WsError::TextTooLong { max: max_chars });
        }
        self.chars = chars;
        self.last_input = now;
        match self.backlog.back_mut() {
            Some(Op::Text(queued)) => queued.push_str(text),
            _ => self.backlog.push_back(Op::Text(text.to_owned())),
        }
        Ok(self.pump(engine))
    }

    /// Synthesises everything buffered now; `flushed` follows the segment's last frame.
    pub fn flush(&mut self, engine: &EngineHandle, now: Instant) -> Result<Vec<Emit>, WsError> {
        self.check_open()?;
        self.last_input = now;
        self.backlog.push_back(Op::Flush);
        Ok(self.pump(engine))
    }

    /// No more text: the rest is synthesised, then `context.done` follows. Idempotent.
    pub fn close(&mut self, engine: &EngineHandle) -> Vec<Emit> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        self.pump(engine)
    }

    fn check_open(&self) -> Result<(), WsError> {
        if self.closed {
            Err(WsError::ContextClosed(self.id.clone()))
        } else {
            Ok(())
        }
    }

    /// Applies queued operations until the current segment's input is closed (then the
    /// segment must finish first) or nothing is left.
    fn pump(&mut self, engine: &EngineHandle) -> Vec<Emit> {
        let mut emits = Vec::new();
        while !self.segment.as_ref().is_some_and(|s| s.input_closed) {
            let result = match self.backlog.pop_front() {
                Some(Op::Text(text)) => self.push_text(engine, &text),
                Some(Op::Flush) => match self.segment.as_mut() {
                    Some(segment) => {
                        self.flushes_pending += 1;
                        segment.close_input()
                    }
                    None => {
                        emits.push(Emit::Flushed);
                        Ok(())
                    }
                },
                None => {
                    if self.closed {
                        match self.segment.as_mut() {
                            Some(segment) => {
                                if let Err(e) = segment.close_input() {
                                    emits.push(Emit::Error(e));
                                }
                            }
                            None => emits.push(Emit::Done),
                        }
                    }
                    break;
                }
            };
            if let Err(e) = result {
                emits.push(Emit::Error(e));
            }
        }
        emits
    }

    /// Pushes text into the current segment, starting one if there is none.
    fn push_text(&mut self, engine: &EngineHandle, text: &str) -> Result<(), WsError> {
        let segment = match self.segment.as_mut() {
            Some(segment) => segment,
            None => self.segment.insert(Segment {
                utterance: engine.start(self.params.clone())?,
                input_closed: false,
            }),
        };
        segment.utterance.push_text(text).map_err(WsError::from)
    }

    /// Whether a segment is running (its events must be read).
    pub fn has_segment(&self) -> bool {
        self.segment.is_some()
    }

    /// The next event of the current segment; never resolves when there is none.
    pub async fn next_event(&mut self) -> Option<UtteranceEvent> {
        match self.segment.as_mut() {
            Some(segment) => segment.utterance.next_event().await,
            None => std::future::pending().await,
        }
    }

    /// The binary frame for a decoded engine frame.
    pub fn audio_frame(&mut self, samples: &[f32]) -> Result<Vec<u8>, WsError> {
        let frame = self.framer.frame(samples)?;
        self.recorder.audio(samples.len());
        Ok(frame)
    }

    /// Records that a frame was written to the client (the first one fixes the TTFA).
    pub fn audio_written(&mut self) {
        self.first_audio.get_or_insert_with(Instant::now);
        self.recorder.audio_written();
    }

    /// The current segment finished: its LAST frame (if it had audio), then what to emit
    /// (`flushed` for each flush it served, and whatever the backlog leads to).
    pub fn segment_finished(
        &mut self,
        engine: &EngineHandle,
    ) -> Result<(Option<Vec<u8>>, Vec<Emit>), WsError> {
        self.segment = None;
        let tail = self.framer.end_segment()?;
        let mut emits = vec![Emit::Flushed; std::mem::take(&mut self.flushes_pending)];
        emits.extend(self.pump(engine));
        Ok((tail, emits))
    }

    /// When the context times out waiting for input (`None` while it has work to do).
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let waiting = !self.closed
            && self.backlog.is_empty()
            && !self.segment.as_ref().is_some_and(|s| s.input_closed);
        waiting.then(|| self.last_input + timeout)
    }

    /// Milliseconds of audio sent.
    pub fn audio_ms(&self) -> u64 {
        self.framer.audio_ms()
    }

    /// Ends the context as done and returns its `context.done` event.
    pub fn done(self) -> ServerEvent {
        let seconds = self.framer.samples_sent() as f64 / f64::from(self.framer.sample_rate());
        let event = ServerEvent::ContextDone {
            context_id: self.id.clone(),
            audio_ms: self.audio_ms(),
            ttfa_ms: self
                .first_audio
                .map(|t| t.duration_since(self.started).as_millis() as u64),
            rtf: (seconds > 0.0).then(|| round4(self.started.elapsed().as_secs_f64() / seconds)),
        };
        self.recorder.finish(Outcome::Done);
        event
    }

    /// Ends the context as cancelled by the client and returns its `cancelled` event. The
    /// running utterance (if any) stops at its next frame.
    pub fn cancelled(self) -> ServerEvent {
        let event = ServerEvent::Cancelled {
            context_id: self.id.clone(),
            audio_sent_ms: self.audio_ms(),
        };
        self.recorder.finish(Outcome::Cancelled);
        event
    }

    /// Ends the context with `outcome` after an error.
    pub fn abort(self, outcome: Outcome) {
        self.recorder.finish(outcome);
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
