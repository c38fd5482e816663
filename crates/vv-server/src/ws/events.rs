//! Server -> client JSON events. Every event carries `type`; events about one context carry
//! its `context_id`.

use serde::Serialize;
use vv_audio::{Encoding, SUPPORTED_SAMPLE_RATES};
use vv_engine::EngineInfo;

use super::error::WsError;
use super::session_config::SessionConfig;
use super::timestamps::WordTime;
use crate::config::Limits;
use crate::routes::models::MODEL_ID;

/// Version of the wire protocol, announced in `session.ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Limits announced in `session.ready`.
#[derive(Debug, Clone, Serialize)]
pub struct AnnouncedLimits {
    /// Characters of text per context.
    pub max_text_chars: usize,
    /// Bytes per client message.
    pub max_message_bytes: usize,
    /// Seconds without a message before the session is closed (4408).
    pub session_idle_timeout_secs: u64,
    /// Seconds a context may wait for text before it is closed.
    pub context_idle_timeout_secs: u64,
    /// Audio frames buffered per context before `slow_consumer`.
    pub max_buffered_frames: usize,
    /// Contexts open at once per session (`too_many_contexts` beyond).
    pub max_contexts_per_session: usize,
    /// Percentage of the synthesis slots one session may hold (`session_slot_share`).
    pub max_session_slot_percent: usize,
    /// Largest `diffusion_steps` accepted.
    pub max_diffusion_steps: usize,
}

/// What `session.ready` tells the client.
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Model id.
    pub model: &'static str,
    /// Device label (`cpu`, `cuda:0`, `metal:0`).
    pub device: String,
    /// Compute dtype.
    pub dtype: &'static str,
    /// The model's sample rate (24000).
    pub native_sample_rate: u32,
    /// Samples per decoded frame at the native rate.
    pub frame_samples: usize,
    /// The session defaults in force.
    pub defaults: SessionConfig,
    /// Limits of this server.
    pub limits: AnnouncedLimits,
    /// Installed voices.
    pub voices: Vec<String>,
    /// Accepted encodings.
    pub encodings: Vec<&'static str>,
    /// Accepted output sample rates.
    pub sample_rates: Vec<u32>,
}

impl Ready {
    /// What a server running `info` with `limits` announces to a session with `defaults`.
    pub fn new(info: &EngineInfo, limits: &Limits, defaults: SessionConfig) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            model: MODEL_ID,
            device: info.device.device.label(),
            dtype: info.device.dtype.as_str(),
            native_sample_rate: info.model.sample_rate,
            frame_samples: info.model.frame_samples,
            defaults,
            limits: AnnouncedLimits {
                max_text_chars: limits.max_text_chars,
                max_message_bytes: limits.max_message_bytes,
                session_idle_timeout_secs: limits.session_idle_timeout_secs,
                context_idle_timeout_secs: limits.context_idle_timeout_secs,
                max_buffered_frames: limits.max_buffered_frames,
                max_contexts_per_session: limits.max_contexts_per_session,
                max_session_slot_percent: limits.max_session_slot_percent,
                max_diffusion_steps: limits.max_diffusion_steps,
            },
            voices: info.voices.clone(),
            encodings: Encoding::ALL
                .iter()
                .map(|e| e.as_str())
                .chain(["mp3"])
                .collect(),
            sample_rates: SUPPORTED_SAMPLE_RATES.to_vec(),
        }
    }
}

/// One event for the client.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// Right after the upgrade.
    #[serde(rename = "session.ready")]
    SessionReady(Box<Ready>),
    /// Answer to `session.configure`: the effective settings.
    #[serde(rename = "session.configured")]
    SessionConfigured(SessionConfig),
    /// A context was created by its first text.
    #[serde(rename = "context.created")]
    ContextCreated {
        /// Client-chosen id.
        context_id: String,
        /// Number used in audio frame headers.
        context_num: u32,
        /// Encoding of its audio frames.
        encoding: &'static str,
        /// Sample rate of its audio frames.
        sample_rate: u32,
    },
    /// The last frame of a flushed segment was sent.
    #[serde(rename = "flushed")]
    Flushed {
        /// Client-chosen id.
        context_id: String,
    },
    /// A closed context has sent all its audio.
    #[serde(rename = "context.done")]
    ContextDone {
        /// Client-chosen id.
        context_id: String,
        /// Audio sent, in milliseconds.
        audio_ms: u64,
        /// First text received -> first audio frame sent, in milliseconds (`null`: no audio).
        ttfa_ms: Option<u64>,
        /// Wall time from the first text to the end, divided by the audio duration
        /// (`null`: no audio).
        rtf: Option<f64>,
    },
    /// A context was cancelled; nothing more is sent for it.
    #[serde(rename = "cancelled")]
    Cancelled {
        /// Client-chosen id.
        context_id: String,
        /// Audio sent before the cancel, in milliseconds.
        audio_sent_ms: u64,
        /// With timestamps on: the words announced whose end was sent (the words spoken).
        #[serde(skip_serializing_if = "Option::is_none")]
        words: Option<Vec<WordTime>>,
    },
    /// Estimated word timestamps (contexts with timestamps on), sent before or with the
    /// audio frame that ends the last of these words.
    #[serde(rename = "timestamps")]
    Timestamps {
        /// Client-chosen id.
        context_id: String,
        /// The words, in order, each once.
        words: Vec<WordTime>,
    },
    /// A non-fatal notice.
    #[serde(rename = "warning")]
    Warning {
        /// The context it concerns, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        context_id: Option<String>,
        /// Stable snake_case label.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// An error; a fatal one is followed by a close.
    #[serde(rename = "error")]
    Error {
        /// The context it concerns, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        context_id: Option<String>,
        /// Stable snake_case label.
        code: &'static str,
        /// Human-readable explanation (no internals).
        message: String,
        /// Whether the session ends.
        fatal: bool,
    },
}

impl ServerEvent {
    /// The `error` event for `error`, about `context_id` when given.
    pub fn error(context_id: Option<&str>, error: &WsError) -> Self {
        ServerEvent::Error {
            context_id: context_id.map(str::to_owned),
            code: error.code(),
            message: error.to_string(),
            fatal: error.is_fatal(),
        }
    }

    /// A `warning` event.
    pub fn warning(
        context_id: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ServerEvent::Warning {
            context_id: context_id.map(str::to_owned),
            code,
            message: message.into(),
        }
    }

    /// The JSON text of the event.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail; an empty object would still be valid JSON.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(ev: &ServerEvent) -> Value {
        serde_json::from_str(&ev.to_json()).unwrap()
    }

    #[test]
    fn events_have_type_and_fields() {
        let v = json(&ServerEvent::error(
            Some("c1"),
            &WsError::UnknownContext("c1".into()),
        ));
        assert_eq!(v["type"], "error");
        assert_eq!(v["context_id"], "c1");
        assert_eq!(v["code"], "unknown_context");
        assert_eq!(v["fatal"], false);
        let v = json(&ServerEvent::error(None, &WsError::IdleTimeout { secs: 3 }));
        assert!(v.get("context_id").is_none());
        assert_eq!(v["fatal"], true);
        let v = json(&ServerEvent::ContextDone {
            context_id: "c".into(),
            audio_ms: 400,
            ttfa_ms: None,
            rtf: Some(0.5),
        });
        assert_eq!(v["type"], "context.done");
        assert!(v["ttfa_ms"].is_null());
        assert_eq!(v["rtf"], 0.5);
        let v = json(&ServerEvent::Flushed {
            context_id: "c".into(),
        });
        assert_eq!(v, serde_json::json!({"type": "flushed", "context_id": "c"}));
    }
}
