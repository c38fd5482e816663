//! API errors: one enum with a stable snake_case `code()`, mapped to an HTTP status, OpenAI's
//! error envelope `{"error":{"message","type","code","param"}}` and the `errors_total{code}`
//! metric (the response carries an [`ErrorCode`] extension that the metrics layer counts).
//! Internal details are logged, never sent.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::{error, warn};
use vv_audio::AudioError;
use vv_engine::EngineError;

/// Seconds a client is asked to wait (`Retry-After`) when the service is full or not ready.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON.
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A field is missing, has the wrong type or an invalid value.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong, for the client.
        message: String,
        /// The offending field, when known.
        param: Option<&'static str>,
    },
    /// The text to synthesise is empty or whitespace only.
    #[error("`input` must contain text to synthesise")]
    EmptyInput,
    /// The text to synthesise is longer than the configured limit.
    #[error("`input` has {chars} characters; the limit is {max}")]
    InputTooLong {
        /// Characters received.
        chars: usize,
        /// Characters allowed (`max_text_chars`).
        max: usize,
    },
    /// The voice is neither installed nor an OpenAI alias; the names that are valid (installed
    /// voices, then aliases), when known.
    #[error("unknown voice {name:?}; {valid}", name = .0, valid = valid_voices(.1))]
    UnknownVoice(String, Vec<String>),
    /// The model id is not one this service answers to.
    #[error("unknown model {0:?}; GET /v1/models lists the accepted ids")]
    UnknownModel(String),
    /// The response format (or encoding) is not produced by this service.
    #[error("unsupported response_format {0:?}; supported: wav, pcm, flac, opus")]
    UnsupportedFormat(String),
    /// The output sample rate is not supported (for this format).
    #[error("{0}")]
    UnsupportedSampleRate(String),
    /// A speed outside 0.25-4.0 was asked for.
    #[error("speed {0} is not supported: the range is 0.25 to 4.0")]
    UnsupportedSpeed(f64),
    /// The request body exceeds the size limit.
    #[error("the request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Bytes allowed.
        limit: usize,
    },
    /// A missing or wrong API key.
    #[error("missing or invalid API key; send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// A browser origin that is neither the server's own nor on `allowed_origins`.
    #[error(
        "requests from this origin are not allowed; see allowed_origins (TTS_ALLOWED_ORIGINS)"
    )]
    OriginNotAllowed,
    /// No such route or resource.
    #[error("not found")]
    NotFound,
    /// The route exists but not for this HTTP method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The model is still loading or warming up.
    #[error("the model is still loading; retry shortly")]
    NotReady,
    /// Every synthesis slot is busy.
    #[error("all {total} synthesis slots are busy; retry shortly")]
    Overloaded {
        /// Slots in all.
        total: usize,
    },
    /// The service is draining before shutdown.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The connection cap (in all or per client address) is reached.
    #[error("too many open connections; retry shortly")]
    TooManyConnections,
    /// The engine thread is gone.
    #[error("the synthesis engine is not running")]
    EngineUnavailable,
    /// The engine's command queue is full.
    #[error("the synthesis engine's command queue is full; retry shortly")]
    QueueFull,
    /// The engine ended the utterance: no text came while it waited for some.
    #[error("no text arrived for {secs} s while the synthesis waited for it")]
    TextWaitTimeout {
        /// The configured bound.
        secs: u64,
    },
    /// The client did not read audio fast enough.
    #[error("the client did not read audio fast enough")]
    SlowConsumer,
    /// The utterance was cancelled by the service (e.g. at shutdown).
    #[error("the synthesis was cancelled")]
    Cancelled,
    /// The model failed while synthesising (details are logged).
    #[error("synthesis failed")]
    SynthesisFailed,
    /// Encoding the audio failed (details are logged).
    #[error("audio encoding failed")]
    EncodingFailed,
    /// Anything else, including a panic inside a handler (details are logged).
    #[error("internal server error")]
    Internal,
}

/// The tail of an `unknown_voice` message: the valid names, or where to find them.
pub(crate) fn valid_voices(names: &[String]) -> String {
    if names.is_empty() {
        "GET /v1/audio/voices lists the installed voices".to_string()
    } else {
        format!("valid voices: {}", names.join(", "))
    }
}

/// Request fields the engine validates; its messages start with the field's name.
const ENGINE_PARAMS: [&str; 3] = ["diffusion_steps", "cfg_scale", "seed"];

/// The stable code of an error response, attached to it for the metrics layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    /// Stable snake_case label (the envelope's `code` and the `errors_total` label).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::EmptyInput => "empty_input",
            ApiError::InputTooLong { .. } => "input_too_long",
            ApiError::UnknownVoice(..) => "unknown_voice",
            ApiError::UnknownModel(_) => "model_not_found",
            ApiError::UnsupportedFormat(_) => "unsupported_format",
            ApiError::UnsupportedSampleRate(_) => "unsupported_sample_rate",
            ApiError::UnsupportedSpeed(_) => "unsupported_speed",
            ApiError::BodyTooLarge { .. } => "request_too_large",
            ApiError::Unauthorized => "invalid_api_key",
            ApiError::OriginNotAllowed => "origin_not_allowed",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NotReady => "not_ready",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::EngineUnavailable => "engine_unavailable",
            ApiError::QueueFull => "queue_full",
            ApiError::TextWaitTimeout { .. } => "text_wait_timeout",
            ApiError::SlowConsumer => "slow_consumer",
            ApiError::Cancelled => "cancelled",
            ApiError::SynthesisFailed => "synthesis_failed",
            ApiError::EncodingFailed => "encoding_failed",
            ApiError::Internal => "internal_error",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidRequest { .. }
            | ApiError::EmptyInput
            | ApiError::InputTooLong { .. }
            | ApiError::UnknownVoice(..)
            | ApiError::UnsupportedFormat(_)
            | ApiError::UnsupportedSampleRate(_)
            | ApiError::UnsupportedSpeed(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady
            | ApiError::Overloaded { .. }
            | ApiError::ShuttingDown
            | ApiError::TooManyConnections
            | ApiError::EngineUnavailable
            | ApiError::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TextWaitTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::SlowConsumer
            | ApiError::Cancelled
            | ApiError::SynthesisFailed
            | ApiError::EncodingFailed
            | ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The request field the error is about, when there is one.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidRequest { param, .. } => *param,
            ApiError::EmptyInput | ApiError::InputTooLong { .. } => Some("input"),
            ApiError::UnknownVoice(..) => Some("voice"),
            ApiError::UnknownModel(_) => Some("model"),
            ApiError::UnsupportedFormat(_) => Some("response_format"),
            ApiError::UnsupportedSampleRate(_) => Some("sample_rate"),
            ApiError::UnsupportedSpeed(_) => Some("speed"),
            _ => None,
        }
    }

    /// OpenAI's error `type` for the status class.
    pub fn kind(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// Seconds to put in `Retry-After`, for errors worth retrying.
    pub fn retry_after(&self) -> Option<u64> {
        matches!(
            self,
            ApiError::NotReady
                | ApiError::Overloaded { .. }
                | ApiError::ShuttingDown
                | ApiError::TooManyConnections
                | ApiError::QueueFull
        )
        .then_some(RETRY_AFTER_SECS)
    }

    /// The OpenAI error envelope, plus the id of the request it answers (`request_id`, null
    /// outside a request: a refused connection).
    pub fn envelope(&self) -> serde_json::Value {
        let request_id = crate::trace::RequestId::current();
        json!({
            "error": {
                "message": self.to_string(),
                "type": self.kind(),
                "code": self.code(),
                "param": self.param(),
                "request_id": request_id.as_ref().map(crate::trace::RequestId::as_str),
            }
        })
    }

    /// Maps a body-extraction failure (size limit or read error).
    pub fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::InvalidRequest {
                message: "the request body could not be read".to_string(),
                param: None,
            }
        }
    }

    /// Shorthand for an invalid field.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // 503s (overload, not ready, draining) are logged rate-limited by the request layer
        // (`crate::app`): a client can cause them at will.
        if self.status().is_server_error() && self.status() != StatusCode::SERVICE_UNAVAILABLE {
            warn!(code = self.code(), "request failed: {self}");
        }
        let mut response = (self.status(), Json(self.envelope())).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self == ApiError::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded { total } => ApiError::Overloaded { total },
            EngineError::Draining => ApiError::ShuttingDown,
            EngineError::UnknownVoice(v) => ApiError::UnknownVoice(v, Vec::new()),
            EngineError::InvalidRequest(message) => ApiError::InvalidRequest {
                param: ENGINE_PARAMS.into_iter().find(|p| message.starts_with(p)),
                message,
            },
            EngineError::SlowConsumer => ApiError::SlowConsumer,
            EngineError::Unavailable => ApiError::EngineUnavailable,
            EngineError::QueueFull => ApiError::QueueFull,
            EngineError::TextWaitTimeout { secs } => ApiError::TextWaitTimeout { secs },
            EngineError::Model { code, message } => {
                error!(code, "synthesis failed: {message}");
                ApiError::SynthesisFailed
            }
        }
    }
}

impl From<AudioError> for ApiError {
    fn from(e: AudioError) -> Self {
        match e {
            AudioError::UnsupportedFormat(f) | AudioError::UnsupportedEncoding(f) => {
                ApiError::UnsupportedFormat(f)
            }
            e @ AudioError::UnsupportedSampleRate { .. } => {
                ApiError::UnsupportedSampleRate(e.to_string())
            }
            other => {
                error!(code = other.code(), "audio encoding failed: {other}");
                ApiError::EncodingFailed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn envelope_has_openai_shape_and_headers() {
        let response = ApiError::Overloaded { total: 2 }.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.extensions().get::<ErrorCode>(),
            Some(&ErrorCode("overloaded"))
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
        assert_eq!(v["error"]["type"], "service_unavailable_error");
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["message"].as_str().unwrap().contains("busy"));
    }

    #[test]
    fn statuses_params_and_codes() {
        let cases = [
            (
                ApiError::UnsupportedSpeed(2.0),
                400,
                "unsupported_speed",
                Some("speed"),
            ),
            (ApiError::EmptyInput, 400, "empty_input", Some("input")),
            (
                ApiError::UnknownVoice("x".into(), Vec::new()),
                400,
                "unknown_voice",
                Some("voice"),
            ),
            (
                ApiError::BodyTooLarge { limit: 1 },
                413,
                "request_too_large",
                None,
            ),
            (ApiError::Unauthorized, 401, "invalid_api_key", None),
            (ApiError::Internal, 500, "internal_error", None),
        ];
        for (err, status, code, param) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code);
            assert_eq!(err.param(), param);
        }
    }

    #[test]
    fn engine_and_audio_errors_map_to_typed_api_errors() {
        assert_eq!(
            ApiError::from(EngineError::Draining).code(),
            "shutting_down"
        );
        let model = EngineError::Model {
            code: "x",
            message: "secret path /a/b".into(),
        };
        let mapped = ApiError::from(model);
        assert_eq!(mapped.code(), "synthesis_failed");
        assert!(!mapped.to_string().contains("secret"));
        let full = ApiError::from(EngineError::QueueFull);
        assert_eq!((full.code(), full.status().as_u16()), ("queue_full", 503));
        assert_eq!(full.retry_after(), Some(RETRY_AFTER_SECS));
        let wait = ApiError::from(EngineError::TextWaitTimeout { secs: 3 });
        assert_eq!(
            (wait.code(), wait.status().as_u16()),
            ("text_wait_timeout", 408)
        );
        let steps = ApiError::from(EngineError::InvalidRequest("cfg_scale must be > 0".into()));
        assert_eq!(steps.param(), Some("cfg_scale"));
        assert_eq!(steps.status(), StatusCode::BAD_REQUEST);
        let rate = "aac".parse::<vv_audio::OutputFormat>().unwrap_err();
        assert_eq!(ApiError::from(rate).code(), "unsupported_format");
        let rate = vv_audio::new_encoder(vv_audio::OutputFormat::Opus, 44_100)
            .err()
            .unwrap();
        assert_eq!(ApiError::from(rate).code(), "unsupported_sample_rate");
    }
}
