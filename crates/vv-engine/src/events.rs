//! Events an utterance sends back to its client, in order: audio frames, then one terminal event.

use std::sync::Arc;

use crate::error::EngineError;

/// Why an utterance ended normally (the model's stop reason).
pub use vv_model::generation::StopReason as FinishReason;

/// One event of an utterance.
#[derive(Debug, Clone)]
pub enum UtteranceEvent {
    /// A decoded frame of 24 kHz mono audio (3200 samples for the real model), in order.
    Audio {
        /// Frame index within the utterance, from 0.
        seq: u32,
        /// Samples in [-1, 1] (not clamped by the model).
        samples: Arc<[f32]>,
        /// Text tokens of the utterance the model had read when it sampled this frame (text
        /// windows of 5 tokens alternate with 6 frames): what word timestamps are estimated from.
        text_tokens: u32,
    },
    /// A non-fatal notice (e.g. a very short text).
    Warning { code: &'static str, message: String },
    /// The utterance ended; no more events follow.
    Finished { reason: FinishReason, frames: u32 },
    /// The utterance was cancelled; no more events follow.
    Cancelled { frames: u32 },
    /// The utterance failed; no more events follow.
    Failed(EngineError),
}

impl UtteranceEvent {
    /// Whether no event follows this one.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            UtteranceEvent::Finished { .. }
                | UtteranceEvent::Cancelled { .. }
                | UtteranceEvent::Failed(_)
        )
    }
}
