//! Per-utterance recording: `contexts_active` while it lives, time to first audio, audio
//! seconds, real-time factor and `contexts_total{outcome}` when it ends, and its timeline
//! (the `utterance` span and `stage_seconds`, see [`crate::trace::Timeline`]). Dropping a
//! recorder that was not finished counts the utterance as cancelled (e.g. the client went
//! away).

use std::sync::Arc;
use std::time::Instant;

use vv_engine::UtteranceHandle;

use super::families::Metrics;
use crate::trace::Timeline;

/// How an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All audio was produced and delivered.
    Done,
    /// Stopped early (client cancel or disconnect, shutdown).
    Cancelled,
    /// Failed (model error, slow consumer, encoding error).
    Failed,
}

impl Outcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }
}

/// Records one utterance into the shared metrics.
pub struct ContextRecorder {
    metrics: Arc<Metrics>,
    text_received: Instant,
    sample_rate: u32,
    first_audio: Option<Instant>,
    samples: u64,
    outcome: Option<Outcome>,
    timeline: Timeline,
}

impl ContextRecorder {
    pub(super) fn new(metrics: Arc<Metrics>, text_received: Instant, sample_rate: u32) -> Self {
        metrics.contexts_active.inc();
        let timeline = Timeline::start(metrics.stage_seconds.clone(), text_received);
        Self {
            timeline,
            metrics,
            text_received,
            sample_rate: sample_rate.max(1),
            first_audio: None,
            samples: 0,
            outcome: None,
        }
    }

    /// The engine admitted `utterance` (a context's first segment; later ones are ignored).
    pub fn admitted(&mut self, utterance: &UtteranceHandle) {
        self.timeline.admitted(utterance);
    }

    /// Names the WebSocket context the utterance is, in its span.
    pub fn context_id(&self, id: &str) {
        self.timeline.context_id(id);
    }

    /// Counts `samples` native-rate samples of produced audio.
    pub fn audio(&mut self, samples: usize) {
        self.timeline.audio();
        let samples = samples as u64;
        self.samples += samples;
        self.metrics
            .audio_seconds_total
            .inc_by(samples as f64 / f64::from(self.sample_rate));
    }

    /// Marks that audio bytes are being written to the client; the first call records TTFA.
    pub fn audio_written(&mut self) {
        self.timeline.written();
        if self.first_audio.is_none() {
            let now = Instant::now();
            self.first_audio = Some(now);
            self.metrics
                .ttfa_seconds
                .observe(now.duration_since(self.text_received).as_secs_f64());
        }
    }

    /// The native sample rate the sample counts refer to.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Seconds of audio counted so far.
    pub fn audio_seconds(&self) -> f64 {
        self.samples as f64 / f64::from(self.sample_rate)
    }

    /// Ends the utterance with `outcome`; a finished utterance with audio records its RTF.
    pub fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for ContextRecorder {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Outcome::Cancelled);
        self.timeline
            .end(outcome.as_str(), outcome == Outcome::Done);
        let audio = self.audio_seconds();
        if outcome == Outcome::Done && audio > 0.0 {
            self.metrics
                .rtf
                .observe(self.text_received.elapsed().as_secs_f64() / audio);
        }
        self.metrics
            .contexts_total
            .with_label_values(&[outcome.as_str()])
            .inc();
        self.metrics.contexts_active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lifecycle() {
        let m = Arc::new(Metrics::new().unwrap());
        let mut rec = m.context(Instant::now(), 24_000);
        assert_eq!(m.contexts_active.get(), 1);
        rec.audio(12_000);
        rec.audio_written();
        rec.audio_written();
        assert!((rec.audio_seconds() - 0.5).abs() < 1e-12);
        rec.finish(Outcome::Done);
        assert_eq!(m.contexts_active.get(), 0);
        assert_eq!(m.contexts_total.with_label_values(&["done"]).get(), 1);
        assert_eq!(m.ttfa_seconds.get_sample_count(), 1);
        assert_eq!(m.rtf.get_sample_count(), 1);
        assert!((m.audio_seconds_total.get() - 0.5).abs() < 1e-12);
        let stage = |s: &str| m.stage_seconds.with_label_values(&[s]).get_sample_count();
        assert_eq!((stage("first_byte"), stage("last_byte")), (1, 1));
    }

    #[test]
    fn dropping_unfinished_counts_a_cancel() {
        let m = Arc::new(Metrics::new().unwrap());
        drop(m.context(Instant::now(), 24_000));
        assert_eq!(m.contexts_total.with_label_values(&["cancelled"]).get(), 1);
        assert_eq!(m.rtf.get_sample_count(), 0);
        assert_eq!(m.contexts_active.get(), 0);
        assert_eq!(
            m.stage_seconds
                .with_label_values(&["last_byte"])
                .get_sample_count(),
            0
        );
    }
}
