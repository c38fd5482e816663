//! What a stream records during a level: every context (or request) it started with the
//! arrival of each audio frame, its first send, its end, and the errors it met by code.

use std::collections::BTreeMap;
use std::time::Duration;

/// One audio frame (WebSocket) or body chunk (HTTP) of a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Arrival time, from the start of the level.
    pub at: Duration,
    /// Whole samples it completed.
    pub samples: u64,
}

/// One context (WebSocket) or request (HTTP): completed, cut off at the deadline or ended by
/// an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRecord {
    /// When its text was sent (the request, over HTTP), from the start of the level.
    pub sent: Duration,
    /// Output sample rate of its audio.
    pub sample_rate: u32,
    /// Its audio frames in arrival order.
    pub frames: Vec<Frame>,
}

impl ContextRecord {
    /// A context whose text was sent at `sent`, with audio at `sample_rate`.
    pub fn new(sent: Duration, sample_rate: u32) -> Self {
        Self {
            sent,
            sample_rate,
            frames: Vec::new(),
        }
    }

    /// Time to first audio: from the send to the first frame; `None` without audio.
    pub fn ttfa(&self) -> Option<Duration> {
        self.frames.first().map(|f| f.at.saturating_sub(self.sent))
    }

    /// Seconds of audio received.
    pub fn audio_seconds(&self) -> f64 {
        let samples: u64 = self.frames.iter().map(|f| f.samples).sum();
        samples as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Everything one stream (a WebSocket session task, or an HTTP request loop) saw in a level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamRecord {
    /// When it first sent something (a WebSocket upgrade or an HTTP request), from the start of
    /// the level; `None` if it never did.
    pub first_send: Option<Duration>,
    /// When it stopped, from the start of the level (at most the level's length).
    pub end: Duration,
    /// The contexts (requests) it started, in order.
    pub contexts: Vec<ContextRecord>,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
}

impl StreamRecord {
    /// Counts one error of `code`.
    pub fn error(&mut self, code: impl Into<String>) {
        *self.errors.entry(code.into()).or_insert(0) += 1;
    }

    /// Notes a send at `at` (the first one starts the stream's wall time).
    pub fn sent(&mut self, at: Duration) {
        self.first_send.get_or_insert(at);
    }

    /// Seconds of audio received over all its contexts.
    pub fn audio_seconds(&self) -> f64 {
        // `+ 0.0`: an empty float sum is -0.0.
        self.contexts
            .iter()
            .map(ContextRecord::audio_seconds)
            .sum::<f64>()
            + 0.0
    }
}
