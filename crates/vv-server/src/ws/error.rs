//! Errors of the WebSocket protocol: each has a stable snake_case `code()` (the `error`
//! event's `code` and the `errors_total{code}` label), a client-safe message (internal details
//! are logged, never sent) and, when fatal, the close code that follows it.

use tracing::error;
use vv_audio::AudioError;
use vv_audio::SUPPORTED_SAMPLE_RATES;
use vv_engine::EngineError;

use super::close_code::CloseCode;

/// Everything a session can report to its client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WsError {
    /// A text message is not a JSON object.
    #[error("the message is not a JSON object: {0}")]
    InvalidJson(String),
    /// A message lacks a field, has a field of the wrong type or an invalid identifier.
    #[error("{0}")]
    InvalidMessage(String),
    /// The `type` is not one of the protocol's client messages.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// `flush`, `close` or `cancel` named a context this session does not have.
    #[error("no open context {0:?} in this session")]
    UnknownContext(String),
    /// Text arrived for a context that was already closed.
    #[error("context {0:?} is closed; use a new context_id")]
    ContextClosed(String),
    /// A `text` message with an empty `text` (and no `flush`).
    #[error("`text` is empty; send text, or `flush` to synthesise what is buffered")]
    EmptyText,
    /// The context's text would exceed `max_text_chars`; the message was dropped.
    #[error("the text of a context is limited to {max} characters; this message was dropped")]
    TextTooLong {
        /// Characters allowed per context.
        max: usize,
    },
    /// The voice is neither installed nor an alias; the message lists the valid names (when
    /// known), as the HTTP API's `unknown_voice` does.
    #[error("unknown voice {0:?}; {valid}", valid = crate::error::valid_voices(.1))]
    UnknownVoice(String, Vec<String>),
    /// The sample encoding is not produced.
    #[error("unsupported encoding {0:?}; supported: pcm_s16le, pcm_f32le, mulaw, alaw, mp3")]
    UnsupportedEncoding(String),
    /// The output sample rate is not produced.
    #[error(
        "unsupported sample rate {0}; supported: 8000, 16000, 22050, 24000, 32000, 44100, 48000"
    )]
    UnsupportedSampleRate(i64),
    /// A parameter value that cannot be clamped into range.
    #[error("{0}")]
    InvalidValue(String),
    /// The session already has `max_contexts_per_session` contexts.
    #[error(
        "this session already has {max} contexts (max_contexts_per_session); \
         close or cancel one before opening another"
    )]
    TooManyContexts {
        /// Contexts allowed per session.
        max: usize,
    },
    /// The session's segments already hold its share of the synthesis slots.
    #[error(
        "this session already holds {limit} of the {total} synthesis slots, the most one \
         session may hold (max_session_slot_percent); wait for one of its contexts to finish"
    )]
    SessionSlotShare {
        /// Slots one session may hold now.
        limit: usize,
        /// Slots in all.
        total: usize,
    },
    /// No synthesis slot is free for a new context or segment.
    #[error("all {total} synthesis slots are busy; retry shortly")]
    Overloaded {
        /// Slots in all.
        total: usize,
    },
    /// The server is draining; no new work is admitted.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The client did not read audio fast enough; its context was cancelled.
    #[error("the client did not read audio fast enough; the context was cancelled")]
    SlowConsumer,
    /// The model failed on this context (details are logged).
    #[error("synthesis failed")]
    SynthesisFailed,
    /// The engine stopped the context on its own (e.g. at shutdown).
    #[error("the synthesis was stopped by the server")]
    SynthesisCancelled,
    /// Encoding the audio of this context failed (details are logged).
    #[error("audio encoding failed")]
    EncodingFailed,
    /// A message exceeded `max_message_bytes`.
    #[error("a message exceeded the limit of {limit} bytes")]
    MessageTooBig {
        /// Bytes allowed per message.
        limit: usize,
    },
    /// A text message was not valid UTF-8.
    #[error("a text message was not valid UTF-8")]
    InvalidUtf8,
    /// The client broke the protocol (binary message, invalid framing).
    #[error("{0}")]
    ProtocolViolation(&'static str),
    /// No message for `session_idle_timeout_secs`.
    #[error("the session was idle for more than {secs} s")]
    IdleTimeout {
        /// The configured timeout.
        secs: u64,
    },
    /// The synthesis engine is not running.
    #[error("the synthesis engine is not running")]
    EngineUnavailable,
    /// The engine's command queue was full; the context's synthesis was ended.
    #[error("the synthesis engine's command queue is full; the context was ended")]
    QueueFull,
    /// No text came while the engine waited for some; the context's synthesis was ended.
    #[error("no text arrived for {secs} s while the synthesis waited for it")]
    TextWaitTimeout {
        /// The configured bound.
        secs: u64,
    },
}

impl WsError {
    /// Stable snake_case label.
    pub fn code(&self) -> &'static str {
        match self {
            WsError::InvalidJson(_) => "invalid_json",
            WsError::InvalidMessage(_) => "invalid_message",
            WsError::UnknownMessageType(_) => "unknown_message_type",
            WsError::UnknownContext(_) => "unknown_context",
            WsError::ContextClosed(_) => "context_closed",
            WsError::EmptyText => "empty_text",
            WsError::TextTooLong { .. } => "text_too_long",
            WsError::UnknownVoice(..) => "unknown_voice",
            WsError::UnsupportedEncoding(_) => "unsupported_encoding",
            WsError::UnsupportedSampleRate(_) => "unsupported_sample_rate",
            WsError::InvalidValue(_) => "invalid_value",
            WsError::TooManyContexts { .. } => "too_many_contexts",
            WsError::SessionSlotShare { .. } => "session_slot_share",
            WsError::Overloaded { .. } => "overloaded",
            WsError::ShuttingDown => "shutting_down",
            WsError::SlowConsumer => "slow_consumer",
            WsError::SynthesisFailed => "synthesis_failed",
            WsError::SynthesisCancelled => "synthesis_cancelled",
            WsError::EncodingFailed => "encoding_failed",
            WsError::MessageTooBig { .. } => "message_too_big",
            WsError::InvalidUtf8 => "invalid_utf8",
            WsError::ProtocolViolation(_) => "protocol_violation",
            WsError::IdleTimeout { .. } => "idle_timeout",
            WsError::EngineUnavailable => "engine_unavailable",
            WsError::QueueFull => "queue_full",
            WsError::TextWaitTimeout { .. } => "text_wait_timeout",
        }
    }

    /// The close code that follows a fatal error; `None` for errors the session survives.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            WsError::MessageTooBig { .. } => Some(CloseCode::MessageTooBig),
            WsError::InvalidUtf8 => Some(CloseCode::InvalidPayload),
            WsError::ProtocolViolation(_) => Some(CloseCode::ProtocolViolation),
            WsError::IdleTimeout { .. } => Some(CloseCode::IdleTimeout),
            WsError::EngineUnavailable => Some(CloseCode::Internal),
            _ => None,
        }
    }

    /// Whether the session ends after this error.
    pub fn is_fatal(&self) -> bool {
        self.close_code().is_some()
    }
}

impl From<EngineError> for WsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded { total } => WsError::Overloaded { total },
            EngineError::Draining => WsError::ShuttingDown,
            EngineError::UnknownVoice(v) => WsError::UnknownVoice(v, Vec::new()),
            EngineError::InvalidRequest(message) => WsError::InvalidValue(message),
            EngineError::SlowConsumer => WsError::SlowConsumer,
            EngineError::Unavailable => WsError::EngineUnavailable,
            EngineError::QueueFull => WsError::QueueFull,
            EngineError::TextWaitTimeout { secs } => WsError::TextWaitTimeout { secs },
            EngineError::Model { code, message } => {
                error!(code, "synthesis failed: {message}");
                WsError::SynthesisFailed
            }
        }
    }
}

impl From<AudioError> for WsError {
    fn from(e: AudioError) -> Self {
        match e {
            AudioError::UnsupportedEncoding(name) | AudioError::UnsupportedFormat(name) => {
                WsError::UnsupportedEncoding(name)
            }
            AudioError::UnsupportedSampleRate { rate, .. } => {
                WsError::UnsupportedSampleRate(i64::from(rate))
            }
            other => {
                error!(code = other.code(), "audio encoding failed: {other}");
                WsError::EncodingFailed
            }
        }
    }
}

/// Whether `rate` is an output rate of the protocol.
pub fn supported_rate(rate: i64) -> Result<u32, WsError> {
    u32::try_from(rate)
        .ok()
        .filter(|r| SUPPORTED_SAMPLE_RATES.contains(r))
        .ok_or(WsError::UnsupportedSampleRate(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_fatal_errors_close() {
        assert_eq!(
            WsError::UnknownContext("a".into()).code(),
            "unknown_context"
        );
        assert!(!WsError::UnknownContext("a".into()).is_fatal());
        let many = WsError::TooManyContexts { max: 4 };
        assert_eq!((many.code(), many.is_fatal()), ("too_many_contexts", false));
        let share = WsError::SessionSlotShare { limit: 2, total: 4 };
        assert_eq!(
            (share.code(), share.is_fatal()),
            ("session_slot_share", false)
        );
        assert_eq!(
            WsError::ProtocolViolation("binary").close_code(),
            Some(CloseCode::ProtocolViolation)
        );
        assert_eq!(
            WsError::IdleTimeout { secs: 1 }
                .close_code()
                .map(CloseCode::code),
            Some(4408)
        );
        assert_eq!(
            WsError::MessageTooBig { limit: 1 }
                .close_code()
                .map(CloseCode::code),
            Some(1009)
        );
        assert_eq!(
            WsError::InvalidUtf8.close_code().map(CloseCode::code),
            Some(1007)
        );
    }

    #[test]
    fn engine_and_audio_errors_map_without_internals() {
        let model = EngineError::Model {
            code: "x",
            message: "/secret/path exploded".into(),
        };
        let mapped = WsError::from(model);
        assert_eq!(mapped.code(), "synthesis_failed");
        assert!(!mapped.to_string().contains("secret"));
        assert_eq!(
            WsError::from(EngineError::Overloaded { total: 1 }).code(),
            "overloaded"
        );
        assert_eq!(WsError::from(EngineError::Draining).code(), "shutting_down");
        assert!(WsError::from(EngineError::Unavailable).is_fatal());
        let full = WsError::from(EngineError::QueueFull);
        assert_eq!((full.code(), full.is_fatal()), ("queue_full", false));
        let wait = WsError::from(EngineError::TextWaitTimeout { secs: 3 });
        assert_eq!((wait.code(), wait.is_fatal()), ("text_wait_timeout", false));
        let bad = "ogg".parse::<vv_audio::Encoding>().unwrap_err();
        assert_eq!(WsError::from(bad).code(), "unsupported_encoding");
    }

    #[test]
    fn sample_rates() {
        assert_eq!(supported_rate(16_000), Ok(16_000));
        assert_eq!(supported_rate(32_000), Ok(32_000));
        for bad in [0, -8000, 11_025, i64::from(u32::MAX) + 8000] {
            assert_eq!(
                supported_rate(bad),
                Err(WsError::UnsupportedSampleRate(bad))
            );
        }
    }
}
