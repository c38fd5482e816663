//! The timeline of one utterance: an `utterance` span (request id, engine utterance id,
//! WebSocket context id, outcome) from the request's (or the text's) arrival to its end, and
//! one DEBUG `stage` event per stage reached, each observed in `vibevoice_stage_seconds{stage}`
//! as seconds since arrival. Engine stages (first window, first frame) are stamped by the
//! model thread and reported when the first audio arrives, with their own times: each event
//! carries `at_unix_nano`, which the OTLP export uses as its time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::HistogramVec;
use tracing::field::Empty;
use tracing::{debug, info_span, Span};
use vv_engine::{StageTimes, UtteranceHandle};

use super::request_id::RequestId;
use super::UTTERANCE_TARGET;

/// A stage of an utterance, in the order they are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A synthesis slot was taken.
    Admitted,
    /// The model began the round that ran its first text window.
    FirstWindow,
    /// Its first audio frame was decoded.
    FirstFrame,
    /// Its first audio bytes were handed to the connection.
    FirstByte,
    /// Its last audio bytes were handed to the connection (completed utterances only).
    LastByte,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Admitted,
        Stage::FirstWindow,
        Stage::FirstFrame,
        Stage::FirstByte,
        Stage::LastByte,
    ];

    /// The `stage` label and event field.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Admitted => "admitted",
            Stage::FirstWindow => "first_window",
            Stage::FirstFrame => "first_frame",
            Stage::FirstByte => "first_byte",
            Stage::LastByte => "last_byte",
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch of an `Instant`, by one anchor pair.
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    wall: Duration,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn unix_nanos(self, at: Instant) -> u64 {
        let wall = match at.checked_duration_since(self.instant) {
            Some(after) => self.wall + after,
            None => self.wall.saturating_sub(self.instant - at),
        };
        u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The timeline of one utterance.
pub struct Timeline {
    span: Span,
    arrived: Instant,
    clock: Clock,
    stage_seconds: HistogramVec,
    admitted: bool,
    /// The engine stages of the first segment, until its first audio reports them.
    engine: Option<Arc<StageTimes>>,
    last_written: Option<Instant>,
}

impl Timeline {
    /// Opens the span of an utterance whose request (or first text) arrived at `arrived`, in
    /// the current span and with the current request id.
    pub fn start(stage_seconds: HistogramVec, arrived: Instant) -> Self {
        let clock = Clock::now();
        let request_id = RequestId::current();
        let span = info_span!(
            target: UTTERANCE_TARGET,
            "utterance",
            request_id = request_id.as_ref().map(RequestId::as_str),
            utterance_id = Empty,
            context_id = Empty,
            outcome = Empty,
            start_unix_nano = clock.unix_nanos(arrived),
        );
        Self {
            span,
            arrived,
            clock,
            stage_seconds,
            admitted: false,
            engine: None,
            last_written: None,
        }
    }

    /// The utterance span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Names the WebSocket context the utterance is.
    pub fn context_id(&self, id: &str) {
        self.span.record("context_id", id);
    }

    /// The engine admitted `utterance` (the first one, for a context of several segments).
    pub fn admitted(&mut self, utterance: &UtteranceHandle) {
        if std::mem::replace(&mut self.admitted, true) {
            return;
        }
        let stages = Arc::clone(utterance.stages());
        self.span.record("utterance_id", utterance.id());
        self.mark(Stage::Admitted, stages.admitted());
        self.engine = Some(stages);
    }

    /// Audio arrived from the engine: the first time, its window and frame stages.
    pub fn audio(&mut self) {
        let Some(stages) = self.engine.take() else {
            return;
        };
        let window = stages.first_window().unwrap_or_else(Instant::now);
        self.mark(Stage::FirstWindow, window);
        self.mark(Stage::FirstFrame, stages.first_frame().unwrap_or(window));
    }

    /// Audio bytes were handed to the connection.
    pub fn written(&mut self) {
        let now = Instant::now();
        if self.last_written.is_none() {
            self.mark(Stage::FirstByte, now);
        }
        self.last_written = Some(now);
    }

    /// The utterance ended with `outcome`; a completed one reached its last byte.
    pub fn end(&mut self, outcome: &'static str, completed: bool) {
        self.span.record("outcome", outcome);
        if let (true, Some(at)) = (completed, self.last_written) {
            self.mark(Stage::LastByte, at);
        }
    }

    fn mark(&self, stage: Stage, at: Instant) {
        let since = at.saturating_duration_since(self.arrived).as_secs_f64();
        self.stage_seconds
            .with_label_values(&[stage.as_str()])
            .observe(since);
        debug!(
            target: UTTERANCE_TARGET,
            parent: &self.span,
            stage = stage.as_str(),
            since_arrival_ms = since * 1e3,
            at_unix_nano = self.clock.unix_nanos(at),
            "stage"
        );
    }
}
