//! Cartesia requests -> protocol v1 messages. One request may become several messages
//! (`text`, then `flush` and/or `close`); one that cannot be translated becomes
//! [`Incoming::Rejected`], which the session reports as an `error` about its context.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::dialects::codec::parse_request;
use crate::ws::{Incoming, WsError};

/// `voice`: `{"mode": "id", "id": ...}`.
#[derive(Debug, Deserialize)]
struct Voice {
    mode: Option<String>,
    id: Option<String>,
}

/// `output_format`: `{"container": "raw", "encoding": ..., "sample_rate": ...}`.
#[derive(Debug, Deserialize)]
struct OutputFormat {
    container: Option<String>,
    encoding: Option<String>,
    sample_rate: Option<i64>,
}

/// `generation_config`: only `speed` is looked at (the core's `speed`, 0.25-4.0).
#[derive(Debug, Deserialize)]
struct GenerationConfig {
    speed: Option<Value>,
}

/// A generation request, a flush or a cancel (other fields are ignored).
#[derive(Debug, Deserialize)]
struct Request {
    context_id: Option<String>,
    #[serde(default)]
    transcript: Option<String>,
    #[serde(rename = "continue")]
    keep_open: Option<bool>,
    #[serde(default)]
    cancel: bool,
    #[serde(default)]
    flush: bool,
    voice: Option<Voice>,
    output_format: Option<OutputFormat>,
    add_timestamps: Option<bool>,
    generation_config: Option<GenerationConfig>,
}

/// The v1 encoding of a Cartesia `output_format.encoding`.
fn encoding(name: &str) -> Result<&'static str, WsError> {
    match name {
        "pcm_s16le" => Ok("pcm_s16le"),
        "pcm_f32le" => Ok("pcm_f32le"),
        "pcm_mulaw" => Ok("mulaw"),
        "pcm_alaw" => Ok("alaw"),
        other => Err(WsError::UnsupportedEncoding(other.to_string())),
    }
}

/// The context settings of a request (applied when it creates its context).
fn settings(request: &Request) -> Result<Map<String, Value>, WsError> {
    let mut out = Map::new();
    if let Some(voice) = &request.voice {
        match (voice.mode.as_deref(), &voice.id) {
            (Some("id") | None, Some(id)) => {
                out.insert("voice".into(), json!(id));
            }
            (Some("id") | None, None) => {}
            (Some(mode), _) => {
                return Err(WsError::InvalidValue(format!(
                "voice mode {mode:?} is not supported; use {{\"mode\": \"id\", \"id\": <voice>}}"
            )))
            }
        }
    }
    if let Some(format) = &request.output_format {
        if let Some(container) = format.container.as_deref().filter(|c| *c != "raw") {
            return Err(WsError::InvalidValue(format!(
                "output_format.container {container:?} is not supported; use \"raw\""
            )));
        }
        if let Some(name) = &format.encoding {
            out.insert("encoding".into(), json!(encoding(name)?));
        }
        if let Some(rate) = format.sample_rate {
            out.insert("sample_rate".into(), json!(rate));
        }
    }
    if let Some(on) = request.add_timestamps {
        out.insert("timestamps".into(), json!(on));
    }
    if let Some(speed) = request
        .generation_config
        .as_ref()
        .and_then(|g| g.speed.as_ref())
    {
        match speed {
            Value::Null => {}
            Value::Number(n) => {
                out.insert("speed".into(), json!(n));
            }
            Value::String(s) if s == "normal" => {}
            other => {
                return Err(WsError::InvalidValue(format!(
                    "generation_config.speed {other} is not supported; use a number (1.0: normal)"
                )))
            }
        }
    }
    Ok(out)
}

/// The v1 messages for a request (its context id known to be present).
fn messages(request: &Request, id: &str) -> Result<Vec<Value>, WsError> {
    if request.cancel {
        return Ok(vec![json!({"type": "cancel", "context_id": id})]);
    }
    let mut out = Vec::new();
    let transcript = request.transcript.as_deref().unwrap_or("");
    if !transcript.is_empty() {
        let mut text = settings(request)?;
        text.insert("type".into(), json!("text"));
        text.insert("context_id".into(), json!(id));
        text.insert("text".into(), json!(transcript));
        out.push(Value::Object(text));
    }
    if request.flush {
        out.push(json!({"type": "flush", "context_id": id}));
    }
    if request.keep_open == Some(false) {
        out.push(json!({"type": "close", "context_id": id}));
    }
    if out.is_empty() {
        out.push(json!({"type": "keepalive"}));
    }
    Ok(out)
}

/// Translates one item from the client.
pub fn translate(item: Incoming) -> Vec<Incoming> {
    let Incoming::Text(text) = item else {
        return vec![item];
    };
    let request: Request = match parse_request(&text) {
        Ok(request) => request,
        Err(rejected) => return vec![rejected],
    };
    let Some(id) = request.context_id.clone() else {
        return vec![Incoming::Rejected {
            context_id: None,
            error: WsError::InvalidMessage("every request needs a `context_id`".to_string()),
        }];
    };
    match messages(&request, &id) {
        Ok(messages) => messages
            .into_iter()
            .map(|m| Incoming::Text(m.to_string()))
            .collect(),
        Err(error) => vec![Incoming::Rejected {
            context_id: Some(id),
            error,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_strategies::{json_value, object_with};
    use proptest::prelude::*;

    fn texts(request: Value) -> Vec<Value> {
        translate(Incoming::Text(request.to_string()))
            .into_iter()
            .map(|i| match i {
                Incoming::Text(t) => serde_json::from_str(&t).unwrap(),
                other => panic!("not translated: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn pipecat_requests_translate() {
        let first = json!({
            "transcript": "Hello there. ", "continue": true, "context_id": "c1",
            "model_id": "sonic-2", "voice": {"mode": "id", "id": "alloy"},
            "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
            "add_timestamps": true, "use_original_timestamps": false, "language": "en",
            "generation_config": {"speed": 1.2}, "max_buffer_delay_ms": 200,
        });
        assert_eq!(
            texts(first),
            [
                json!({"type": "text", "context_id": "c1", "text": "Hello there. ",
                    "voice": "alloy", "encoding": "mulaw", "sample_rate": 8000,
                    "timestamps": true, "speed": 1.2})
            ]
        );
        let end = json!({"transcript": "", "continue": false, "context_id": "c1"});
        assert_eq!(texts(end), [json!({"type": "close", "context_id": "c1"})]);
        let livekit_end = json!({"transcript": " ", "continue": false, "context_id": "c1"});
        let got = texts(livekit_end);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], json!({"type": "close", "context_id": "c1"}));
        let cancel = json!({"context_id": "c1", "cancel": true});
        assert_eq!(
            texts(cancel),
            [json!({"type": "cancel", "context_id": "c1"})]
        );
        let flush = json!({"context_id": "c1", "transcript": "", "continue": true, "flush": true});
        assert_eq!(texts(flush), [json!({"type": "flush", "context_id": "c1"})]);
    }

    #[test]
    fn untranslatable_requests_are_rejected_with_their_context() {
        let rejected = |v: Value| match translate(Incoming::Text(v.to_string())).pop() {
            Some(Incoming::Rejected { context_id, error }) => (context_id, error.code()),
            other => panic!("not rejected: {other:?}"),
        };
        let speed = json!({"context_id": "a", "transcript": "x",
                           "generation_config": {"speed": "fastest"}});
        assert_eq!(rejected(speed), (Some("a".into()), "invalid_value"));
        let wav = json!({"context_id": "a", "transcript": "x",
                         "output_format": {"container": "wav", "encoding": "pcm_s16le"}});
        assert_eq!(rejected(wav), (Some("a".into()), "invalid_value"));
        let mp3 = json!({"context_id": "a", "transcript": "x",
                         "output_format": {"container": "raw", "encoding": "mp3"}});
        assert_eq!(rejected(mp3), (Some("a".into()), "unsupported_encoding"));
        let embedding = json!({"context_id": "a", "transcript": "x",
                               "voice": {"mode": "embedding", "embedding": [0.1]}});
        assert_eq!(rejected(embedding), (Some("a".into()), "invalid_value"));
        assert_eq!(
            rejected(json!({"transcript": "x"})),
            (None, "invalid_message")
        );
        assert_eq!(
            rejected(json!({"context_id": 5})),
            (None, "invalid_message")
        );
        let bad = translate(Incoming::Text("{nope".into())).pop();
        assert!(matches!(
            bad,
            Some(Incoming::Rejected {
                error: WsError::InvalidJson(_),
                ..
            })
        ));
        assert_eq!(translate(Incoming::Ping), [Incoming::Ping]);
    }

    proptest! {
        /// Request-shaped JSON with any field values never panics, what fails is a non-fatal
        /// error and what is translated is valid v1 (the fuzz check).
        #[test]
        fn request_shaped_json_never_panics(v in object_with(
            prop::option::of(json_value()),
            &["context_id", "transcript", "continue", "cancel", "flush", "voice",
              "output_format", "add_timestamps", "generation_config"],
        )) {
            crate::fuzz_entry::cartesia_request(v.to_string().as_bytes());
        }
    }
}
