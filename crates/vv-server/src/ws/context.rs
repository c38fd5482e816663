//! One context: a client-named utterance stream made of segments. A segment is one engine
//! utterance; `flush` closes the segment's input (everything buffered, including a held-back
//! partial word, is synthesised) and the next text starts a new segment. Operations that
//! arrive while a flushed segment is still draining wait in a backlog, so segments never
//! overlap and audio stays in order.
//!
//! Idleness is measured by synthesis, not by messages: the idle clock restarts when a segment
//! starts, produces audio or finishes, never for text pushed into a running segment. A client
//! that trickles characters into a segment that never completes a speakable window is closed
//! after `context_idle_timeout_secs` like a silent one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vv_audio::NATIVE_SAMPLE_RATE;
use vv_engine::{EngineHandle, SynthesisParams, UtteranceEvent, UtteranceHandle};

use super::backlog::{Backlog, Op};
use super::error::WsError;
use super::events::ServerEvent;
use super::framing::AudioFramer;
use super::session_config::SessionConfig;
use super::slot_share::{SessionSlots, ShareGuard};
use super::timestamps::{WordClock, WordTime};
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

/// What the end of a segment sends, in order.
pub struct SegmentEnd {
    /// The `timestamps` of its words not yet announced.
    pub words: Option<ServerEvent>,
    /// Its LAST frame (`None`: the segment had no audio).
    pub tail: Option<Vec<u8>>,
    /// What follows (`flushed`, `context.done`, errors).
    pub emits: Vec<Emit>,
}

/// The engine utterance of the current segment.
struct Segment {
    utterance: UtteranceHandle,
    input_closed: bool,
    _share: ShareGuard,
}

impl Segment {
    fn start(
        slots: &SessionSlots,
        engine: &EngineHandle,
        params: SynthesisParams,
    ) -> Result<Self, WsError> {
        let (utterance, share) = slots.start(engine, params)?;
        Ok(Self {
            utterance,
            input_closed: false,
            _share: share,
        })
    }

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
    slots: SessionSlots,
    segment: Option<Segment>,
    backlog: Backlog,
    closed: bool,
    flushes_pending: usize,
    chars: usize,
    started: Instant,
    first_audio: Option<Instant>,
    /// When the session first saw the engine holding its first window's text.
    window_fed: Option<Instant>,
    /// When synthesis last progressed (segment started, audio produced, segment finished).
    last_progress: Instant,
    recorder: ContextRecorder,
    /// Word timing, when the context sends timestamps.
    words: Option<WordClock>,
}

/// A word's tokens, counted by the engine's tokenizer (0 if it cannot tokenize it).
fn token_counter(engine: &EngineHandle) -> impl FnMut(&str) -> usize + '_ {
    |word| engine.count_tokens(word).unwrap_or(0)
}

impl Context {
    /// Creates context `num` with the session's current settings and starts its first
    /// segment (failing with `session_slot_share` when the session holds its share of the
    /// slots, `overloaded` when no slot is free). `now` is when its first text arrived.
    pub fn open(
        id: String,
        num: u32,
        config: &SessionConfig,
        engine: &EngineHandle,
        slots: &SessionSlots,
        metrics: &Arc<Metrics>,
        now: Instant,
    ) -> Result<Self, WsError> {
        let framer =
            AudioFramer::new(num, config.encoding, config.sample_rate)?.with_speed(config.speed);
        let params = config.synthesis_params();
        let segment = Segment::start(slots, engine, params.clone())?;
        let mut recorder = metrics.context(now, NATIVE_SAMPLE_RATE);
        recorder.context_id(&id);
        recorder.admitted(&segment.utterance);
        Ok(Self {
            id,
            num,
            params,
            framer,
            slots: slots.clone(),
            segment: Some(segment),
            backlog: Backlog::default(),
            closed: false,
            flushes_pending: 0,
            chars: 0,
            started: now,
            first_audio: None,
            window_fed: None,
            last_progress: now,
            recorder,
            words: config
                .timestamps
                .then(|| WordClock::new(engine.info().model.frame_samples, config.speed.get())),
        })
    }

    /// The `context.created` event.
    pub fn created_event(&self) -> ServerEvent {
        ServerEvent::ContextCreated {
            context_id: self.id.clone(),
            context_num: self.num,
            encoding: self.framer.encoding(),
            sample_rate: self.framer.sample_rate(),
        }
    }

    /// Appends text; at most `max_chars` characters per context are accepted. Text alone
    /// does not restart the idle clock (see the module documentation). With `push` false the
    /// text only joins the backlog (merged with text queued before it) until
    /// [`Context::push_queued`] or the next operation that pushes.
    pub fn text(
        &mut self,
        engine: &EngineHandle,
        text: &str,
        max_chars: usize,
        push: bool,
    ) -> Result<Vec<Emit>, WsError> {
        self.check_open()?;
        let chars = self.chars + text.chars().count();
        if chars > max_chars {
            return Err(WsError::TextTooLong { max: max_chars });
        }
        self.chars = chars;
        self.backlog.push_text(text);
        Ok(match push {
            true => self.pump(engine),
            false => Vec::new(),
        })
    }

    /// Whether operations wait in the backlog.
    pub fn has_queued(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Applies what waits in the backlog, as far as the current segment allows.
    pub fn push_queued(&mut self, engine: &EngineHandle) -> Vec<Emit> {
        self.pump(engine)
    }

    /// Synthesises everything buffered now; `flushed` follows the segment's last frame.
    pub fn flush(&mut self, engine: &EngineHandle) -> Result<Vec<Emit>, WsError> {
        self.check_open()?;
        self.backlog.push_flush();
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
            let result = match self.backlog.pop() {
                Some(Op::Text(text)) => self.push_text(engine, &text),
                Some(Op::Flush(count)) => match self.segment.is_some() {
                    true => {
                        self.flushes_pending = self.flushes_pending.saturating_add(count);
                        self.close_segment_input(engine)
                    }
                    false => {
                        emits.extend(std::iter::repeat_n(Emit::Flushed, count));
                        Ok(())
                    }
                },
                None => {
                    if self.closed {
                        if self.segment.is_none() {
                            emits.push(Emit::Done);
                        } else if let Err(e) = self.close_segment_input(engine) {
                            emits.push(Emit::Error(e));
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

    /// Closes the current segment's input (its last word is then complete).
    fn close_segment_input(&mut self, engine: &EngineHandle) -> Result<(), WsError> {
        if let Some(words) = self.words.as_mut() {
            words.close_input(&mut token_counter(engine));
        }
        match self.segment.as_mut() {
            Some(segment) => segment.close_input(),
            None => Ok(()),
        }
    }

    /// Pushes text into the current segment, starting one if there is none (which restarts
    /// the idle clock).
    fn push_text(&mut self, engine: &EngineHandle, text: &str) -> Result<(), WsError> {
        let segment = match self.segment.as_mut() {
            Some(segment) => segment,
            None => {
                let segment = Segment::start(&self.slots, engine, self.params.clone())?;
                self.last_progress = Instant::now();
                self.segment.insert(segment)
            }
        };
        segment.utterance.push_text(text).map_err(WsError::from)?;
        if let Some(words) = self.words.as_mut() {
            words.text(text, &mut token_counter(engine));
        }
        Ok(())
    }

    /// Whether a segment is running (its events must be read).
    pub fn has_segment(&self) -> bool {
        self.segment.is_some()
    }

    /// Until when the session may leave client messages unread for this context: while its
    /// first audio is on its way from text the engine already has (so nothing still to come
    /// can bring that audio sooner), at most `hold` from when that was first seen (`now`, the
    /// first time).
    pub fn first_audio_hold(&mut self, hold: Duration, now: Instant) -> Option<Instant> {
        let segment = self.segment.as_ref()?;
        if self.first_audio.is_some() || !segment.utterance.first_window_fed() {
            return None;
        }
        Some(*self.window_fed.get_or_insert(now) + hold)
    }

    /// The next event of the current segment; never resolves when there is none.
    pub async fn next_event(&mut self) -> Option<UtteranceEvent> {
        match self.segment.as_mut() {
            Some(segment) => segment.utterance.next_event().await,
            None => std::future::pending().await,
        }
    }

    /// The `timestamps` event to send before an engine frame of `samples` native samples,
    /// sampled after `text_tokens` tokens of the segment were read (`None`: no word ends).
    pub fn frame_words(&mut self, text_tokens: u32, samples: usize) -> Option<ServerEvent> {
        let words = self.words.as_mut()?.frame(text_tokens as usize, samples);
        self.timestamps_event(words)
    }

    /// The `timestamps` event of the words left when the current segment ends (sent before
    /// its last frame).
    fn finished_words(&mut self) -> Option<ServerEvent> {
        let words = self.words.as_mut()?.segment_finished();
        self.timestamps_event(words)
    }

    fn timestamps_event(&self, words: Vec<WordTime>) -> Option<ServerEvent> {
        (!words.is_empty()).then(|| ServerEvent::Timestamps {
            context_id: self.id.clone(),
            words,
        })
    }

    /// The binary frame for a decoded engine frame.
    pub fn audio_frame(&mut self, samples: &[f32]) -> Result<Vec<u8>, WsError> {
        let frame = self.framer.frame(samples)?;
        self.recorder.audio(samples.len());
        self.last_progress = Instant::now();
        Ok(frame)
    }

    /// Records that a frame was written to the client (the first one fixes the TTFA).
    pub fn audio_written(&mut self) {
        self.first_audio.get_or_insert_with(Instant::now);
        self.recorder.audio_written();
    }

    /// The current segment finished: the timestamps of its remaining words, its LAST frame
    /// (if it had audio), then what to emit (`flushed` for each flush it served, and whatever
    /// the backlog leads to).
    pub fn segment_finished(&mut self, engine: &EngineHandle) -> Result<SegmentEnd, WsError> {
        let words = self.finished_words();
        self.segment = None;
        self.last_progress = Instant::now();
        let tail = self.framer.end_segment()?;
        let mut emits = vec![Emit::Flushed; std::mem::take(&mut self.flushes_pending)];
        emits.extend(self.pump(engine));
        Ok(SegmentEnd { words, tail, emits })
    }

    /// When the context times out waiting for input (`None` while it has work to do):
    /// `timeout` after synthesis last progressed, whatever text arrived since.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let waiting = !self.closed
            && self.backlog.is_empty()
            && !self.segment.as_ref().is_some_and(|s| s.input_closed);
        waiting.then(|| self.last_progress + timeout)
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
        let audio_sent_ms = self.audio_ms();
        let event = ServerEvent::Cancelled {
            context_id: self.id.clone(),
            audio_sent_ms,
            words: self.words.as_ref().map(|w| w.spoken(audio_sent_ms)),
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
