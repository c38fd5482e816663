//! Client -> server messages: JSON text frames with a `type` field. Parsing is two-step so
//! that each kind of bad input gets its own error: not a JSON object (`invalid_json`), no or
//! unknown `type` (`invalid_message` / `unknown_message_type`), missing or mistyped fields
//! (`invalid_message`). Unknown fields are ignored (forward compatibility).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::WsError;

/// Longest accepted `context_id`, in bytes.
pub const MAX_CONTEXT_ID_BYTES: usize = 256;

/// The `context_id` of `cancel` that means every context of the session.
pub const ALL_CONTEXTS: &str = "*";

/// `session.configure`: each field given replaces the session default; absent fields keep it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Configure {
    /// Installed voice or OpenAI alias (blank: the server's default voice).
    pub voice: Option<String>,
    /// `pcm_s16le`, `pcm_f32le`, `mulaw`, `alaw` or `mp3`.
    pub encoding: Option<String>,
    /// Bits per second of `mp3` audio (8000 to 320000; absent: 128 kb/s at 32-48 kHz, 64 at
    /// 16-24 kHz, 32 at 8 kHz).
    pub bit_rate: Option<i64>,
    /// Output sample rate in Hz.
    pub sample_rate: Option<i64>,
    /// Classifier-free guidance scale.
    pub cfg_scale: Option<f64>,
    /// Diffusion steps per frame.
    pub diffusion_steps: Option<i64>,
    /// Noise seed; `null` returns to a random seed per segment.
    #[serde(default, deserialize_with = "present")]
    pub seed: Option<Option<u64>>,
    /// Send estimated word timestamps (`timestamps` events).
    pub timestamps: Option<bool>,
    /// Playback speed, 0.25-4.0 (pitch kept).
    pub speed: Option<f64>,
}

/// Deserializes a field that is present (possibly `null`) as `Some(value)`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Which contexts a `cancel` stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    /// Every context of the session (`"*"`).
    All,
    /// One context.
    One(String),
}

/// A parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `session.configure`.
    Configure(Configure),
    /// `text`: append `text` to the context (creating it on first use), then flush if asked.
    Text {
        /// Client-chosen context id.
        context_id: String,
        /// Text to append (may be empty only together with `flush`).
        text: String,
        /// Flush after appending.
        flush: bool,
        /// `session.configure` fields given with the context's first text: they apply to this
        /// context only (ignored on later texts).
        settings: Configure,
    },
    /// `flush`: synthesise everything buffered in the context now.
    Flush {
        /// Client-chosen context id.
        context_id: String,
    },
    /// `close`: no more text for the context.
    Close {
        /// Client-chosen context id.
        context_id: String,
    },
    /// `cancel`: stop one or every context now.
    Cancel(CancelTarget),
    /// `keepalive`: resets the idle timer.
    Keepalive,
}

#[derive(Deserialize)]
struct TextFields {
    context_id: String,
    text: String,
    #[serde(default)]
    flush: Option<bool>,
    #[serde(flatten)]
    settings: Configure,
}

#[derive(Deserialize)]
struct ContextFields {
    context_id: String,
}

fn fields<T: DeserializeOwned>(kind: &str, value: Value) -> Result<T, WsError> {
    serde_json::from_value(value)
        .map_err(|e| WsError::InvalidMessage(format!("invalid `{kind}` message: {e}")))
}

fn context_id(id: String) -> Result<String, WsError> {
    if id.is_empty() || id.len() > MAX_CONTEXT_ID_BYTES {
        return Err(WsError::InvalidMessage(format!(
            "`context_id` must have 1 to {MAX_CONTEXT_ID_BYTES} bytes"
        )));
    }
    if id == ALL_CONTEXTS {
        return Err(WsError::InvalidMessage(
            "`context_id` \"*\" is reserved for `cancel`".to_string(),
        ));
    }
    Ok(id)
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, WsError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| WsError::InvalidJson(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(WsError::InvalidJson("expected an object".to_string()));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => {
            return Err(WsError::InvalidMessage(
                "every message needs a string field `type`".to_string(),
            ))
        }
    };
    match kind.as_str() {
        "session.configure" => Ok(ClientMessage::Configure(fields(&kind, value)?)),
        "text" => {
            let f: TextFields = fields(&kind, value)?;
            Ok(ClientMessage::Text {
                context_id: context_id(f.context_id)?,
                text: f.text,
                flush: f.flush.unwrap_or(false),
                settings: f.settings,
            })
        }
        "flush" => {
            let f: ContextFields = fields(&kind, value)?;
            Ok(ClientMessage::Flush {
                context_id: context_id(f.context_id)?,
            })
        }
        "close" => {
            let f: ContextFields = fields(&kind, value)?;
            Ok(ClientMessage::Close {
                context_id: context_id(f.context_id)?,
            })
        }
        "cancel" => {
            let f: ContextFields = fields(&kind, value)?;
            Ok(ClientMessage::Cancel(if f.context_id == ALL_CONTEXTS {
                CancelTarget::All
            } else {
                CancelTarget::One(context_id(f.context_id)?)
            }))
        }
        "keepalive" => Ok(ClientMessage::Keepalive),
        _ => Err(WsError::UnknownMessageType(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_strategies::{json_value, object_with, FUZZ_CASES};
    use proptest::prelude::*;

    #[test]
    fn parses_every_message() {
        assert_eq!(
            parse(r#"{"type":"text","context_id":"a","text":"Hi ","flush":true,"x":1}"#),
            Ok(ClientMessage::Text {
                context_id: "a".into(),
                text: "Hi ".into(),
                flush: true,
                settings: Configure::default(),
            })
        );
        assert_eq!(
            parse(r#"{"type":"flush","context_id":"a"}"#),
            Ok(ClientMessage::Flush {
                context_id: "a".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"close","context_id":"a"}"#),
            Ok(ClientMessage::Close {
                context_id: "a".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"cancel","context_id":"*"}"#),
            Ok(ClientMessage::Cancel(CancelTarget::All))
        );
        assert_eq!(
            parse(r#"{"type":"keepalive"}"#),
            Ok(ClientMessage::Keepalive)
        );
        let ClientMessage::Configure(c) =
            parse(r#"{"type":"session.configure","voice":"v","sample_rate":16000,"seed":null}"#)
                .unwrap()
        else {
            panic!("not a configure")
        };
        assert_eq!(c.voice.as_deref(), Some("v"));
        assert_eq!(c.sample_rate, Some(16_000));
        assert_eq!(c.seed, Some(None));
        let ClientMessage::Configure(c) = parse(r#"{"type":"session.configure"}"#).unwrap() else {
            panic!("not a configure")
        };
        assert_eq!(c, Configure::default());
        let first = r#"{"type":"text","context_id":"a","text":"Hi","timestamps":true,"voice":"v","seed":null}"#;
        let ClientMessage::Text { settings, .. } = parse(first).unwrap() else {
            panic!("not a text")
        };
        assert_eq!(
            settings,
            Configure {
                timestamps: Some(true),
                voice: Some("v".into()),
                seed: Some(None),
                ..Configure::default()
            }
        );
    }

    #[test]
    fn bad_input_gets_distinct_codes() {
        let code = |s: &str| parse(s).unwrap_err().code();
        assert_eq!(code("{not json"), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_json");
        assert_eq!(code(r#"{"text":"x"}"#), "invalid_message");
        assert_eq!(code(r#"{"type":5}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_message_type");
        assert_eq!(code(r#"{"type":"text","text":"x"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"text","context_id":"a"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"text","context_id":7,"text":"x"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"text","context_id":"","text":"x"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"text","context_id":"*","text":"x"}"#),
            "invalid_message"
        );
        assert_eq!(code(r#"{"type":"flush"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"session.configure","diffusion_steps":2.5}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"text","context_id":"a","text":"x","timestamps":"yes"}"#),
            "invalid_message"
        );
        let long = "x".repeat(MAX_CONTEXT_ID_BYTES + 1);
        let msg = format!(r#"{{"type":"close","context_id":"{long}"}}"#);
        assert_eq!(code(&msg), "invalid_message");
    }

    /// Objects shaped like client messages: a known (or near-known, or absent, or any) `type`
    /// and the protocol's field names, each with any JSON value.
    fn message_like() -> impl Strategy<Value = Value> {
        let kind = prop::option::of(prop_oneof![
            prop::sample::select(vec![
                "session.configure",
                "text",
                "flush",
                "close",
                "cancel",
                "Text",
                "text ",
                "ping",
                ""
            ])
            .prop_map(Value::from),
            json_value(),
        ]);
        object_with(
            kind,
            &[
                "context_id",
                "text",
                "flush",
                "voice",
                "encoding",
                "bit_rate",
                "sample_rate",
                "cfg_scale",
                "diffusion_steps",
                "seed",
                "extra",
            ],
        )
    }

    proptest! {
        // Fuzzing by structured generation (issue 12): 10,000 cases each.
        #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]
        /// Arbitrary input never panics; whatever fails gets a non-fatal error (the fuzz check).
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            crate::fuzz_entry::ws_message(s.as_bytes());
        }

        /// Message-shaped JSON with any field values never panics: it parses, or it gets a
        /// non-fatal error with one of the documented codes.
        #[test]
        fn message_shaped_json_never_panics(v in message_like()) {
            crate::fuzz_entry::ws_message(v.to_string().as_bytes());
        }

        /// A text message round-trips whatever its text and id.
        #[test]
        fn text_messages_round_trip(id in "[^*]{1,40}", text in ".{0,80}", flush in any::<bool>()) {
            let json = serde_json::json!({"type": "text", "context_id": id, "text": text, "flush": flush});
            prop_assert_eq!(
                parse(&json.to_string()),
                Ok(ClientMessage::Text { context_id: id, text, flush, settings: Configure::default() })
            );
        }
    }
}
