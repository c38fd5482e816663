//! Engine errors, each with a stable machine label used by the server's error mapping.

use vv_model::ModelError;

/// What can go wrong when asking the engine for work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// Every utterance slot is taken.
    #[error("all {total} synthesis slots are busy; retry shortly")]
    Overloaded { total: usize },
    /// The engine is shutting down and takes no new work.
    #[error("the service is shutting down")]
    Draining,
    /// The requested voice is not installed.
    #[error("unknown voice {0:?}")]
    UnknownVoice(String),
    /// A parameter is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The consumer did not read audio fast enough; the utterance was cancelled.
    #[error("the client did not read audio fast enough")]
    SlowConsumer,
    /// The model thread is gone (it failed or was stopped).
    #[error("the synthesis engine is not running")]
    Unavailable,
    /// The model failed while synthesising.
    #[error("synthesis failed: {message}")]
    Model { code: &'static str, message: String },
    /// The model thread's command queue is full (it is behind, or stuck); nothing was queued.
    #[error("the synthesis engine's command queue is full; retry shortly")]
    QueueFull,
    /// The utterance waited for more text longer than the configured bound; it was ended and
    /// its slot freed.
    #[error("no text arrived for {secs} s while the synthesis waited for it")]
    TextWaitTimeout { secs: u64 },
}

impl EngineError {
    /// Stable snake_case label.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Overloaded { .. } => "overloaded",
            EngineError::Draining => "shutting_down",
            EngineError::UnknownVoice(_) => "unknown_voice",
            EngineError::InvalidRequest(_) => "invalid_request",
            EngineError::SlowConsumer => "slow_consumer",
            EngineError::Unavailable => "engine_unavailable",
            EngineError::Model { .. } => "synthesis_failed",
            EngineError::QueueFull => "queue_full",
            EngineError::TextWaitTimeout { .. } => "text_wait_timeout",
        }
    }
}

impl EngineError {
    /// A failure of the engine itself (a panic caught on the model thread), not of the input.
    pub(crate) fn internal(message: &str) -> Self {
        EngineError::Model {
            code: "internal_error",
            message: message.to_string(),
        }
    }
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::UnknownVoice(v) => EngineError::UnknownVoice(v),
            ModelError::InvalidInput(m) => EngineError::InvalidRequest(m),
            other => EngineError::Model {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}
