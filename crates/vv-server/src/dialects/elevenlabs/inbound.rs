//! ElevenLabs requests -> protocol v1 messages. One request may become several messages
//! (`text`, then `flush` and/or `close`); one that cannot be translated becomes
//! [`Incoming::Rejected`], which the session reports as an `error` about its context.
//!
//! `close_socket` ends the session ([`Incoming::End`]: every context stops, the server closes
//! with 1000), as ElevenLabs closes the connection; Pipecat waits for that close.
//!
//! An empty `text` is what ElevenLabs makes it: a keepalive on `multi-stream-input`, the end
//! of input on `stream-input` (whose one context is [`SINGLE_CONTEXT`]).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::dialects::codec::parse_request;
use crate::ws::{Incoming, WsError};

/// The context id of `stream-input`'s one context.
pub const SINGLE_CONTEXT: &str = "0";

/// Which WebSocket a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contexts {
    /// `multi-stream-input`: every request names its context.
    Many,
    /// `stream-input`: one context; `{"text": ""}` ends it.
    One,
}

/// `voice_settings`: only `speed` is looked at (the core's `speed`, 0.25-4.0).
#[derive(Debug, Deserialize)]
struct VoiceSettings {
    speed: Option<Value>,
}

/// A text, flush, close or keepalive request (other fields are ignored).
#[derive(Debug, Deserialize)]
struct Request {
    text: Option<String>,
    context_id: Option<String>,
    voice_settings: Option<VoiceSettings>,
    #[serde(default)]
    flush: bool,
    #[serde(default)]
    close_context: bool,
    #[serde(default)]
    close_socket: bool,
}

/// The v1 `text` message (with `speed` when `voice_settings` gives one).
fn text(request: &Request, id: &str, text: &str) -> Result<Value, WsError> {
    let mut message = json!({"type": "text", "context_id": id, "text": text});
    match request
        .voice_settings
        .as_ref()
        .and_then(|v| v.speed.as_ref())
    {
        None | Some(Value::Null) => {}
        Some(Value::Number(speed)) => message["speed"] = json!(speed),
        Some(other) => {
            return Err(WsError::InvalidValue(format!(
                "voice_settings.speed {other} is not a number"
            )))
        }
    }
    Ok(message)
}

/// The v1 messages for a request.
fn messages(contexts: Contexts, request: &Request) -> Result<Vec<Value>, WsError> {
    let id = match contexts {
        Contexts::One => Some(SINGLE_CONTEXT),
        Contexts::Many => request.context_id.as_deref(),
    };
    let mut out = Vec::new();
    let mut end_of_input = false;
    match (request.text.as_deref(), id) {
        (None | Some(""), _) => end_of_input = contexts == Contexts::One && request.text.is_some(),
        (Some(t), Some(id)) => out.push(text(request, id, t)?),
        (Some(_), None) => {
            return Err(WsError::InvalidMessage(
                "text needs a `context_id` on multi-stream-input".to_string(),
            ))
        }
    }
    if let Some(id) = id {
        if request.flush {
            out.push(json!({"type": "flush", "context_id": id}));
        }
        if request.close_context || end_of_input {
            out.push(json!({"type": "close", "context_id": id}));
        }
    }
    if out.is_empty() {
        out.push(json!({"type": "keepalive"}));
    }
    Ok(out)
}

/// Translates one item from the client.
pub fn translate(contexts: Contexts, item: Incoming) -> Vec<Incoming> {
    let Incoming::Text(text) = item else {
        return vec![item];
    };
    let request: Request = match parse_request(&text) {
        Ok(request) => request,
        Err(rejected) => return vec![rejected],
    };
    if request.close_socket {
        return vec![Incoming::End];
    }
    match messages(contexts, &request) {
        Ok(messages) => messages
            .into_iter()
            .map(|m| Incoming::Text(m.to_string()))
            .collect(),
        Err(error) => vec![Incoming::Rejected {
            context_id: request.context_id,
            error,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_strategies::{json_value, object_with};
    use proptest::prelude::*;

    fn texts(contexts: Contexts, request: Value) -> Vec<Value> {
        translate(contexts, Incoming::Text(request.to_string()))
            .into_iter()
            .map(|i| match i {
                Incoming::Text(t) => serde_json::from_str(&t).unwrap(),
                other => panic!("not translated: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn pipecat_requests_translate() {
        let many = |v| texts(Contexts::Many, v);
        let init = json!({"text": " ", "context_id": "c1",
                          "voice_settings": {"stability": 0.5, "speed": 1.1}});
        assert_eq!(
            many(init),
            [json!({"type": "text", "context_id": "c1", "text": " ", "speed": 1.1})]
        );
        assert_eq!(
            many(json!({"text": "Hello there. ", "context_id": "c1"})),
            [json!({"type": "text", "context_id": "c1", "text": "Hello there. "})]
        );
        assert_eq!(
            many(json!({"context_id": "c1", "flush": true})),
            [json!({"type": "flush", "context_id": "c1"})]
        );
        assert_eq!(
            many(json!({"context_id": "c1", "close_context": true})),
            [json!({"type": "close", "context_id": "c1"})]
        );
        for close_socket in [
            json!({"close_socket": true}),
            json!({"close_socket": true, "text": "x"}),
        ] {
            let got = translate(Contexts::Many, Incoming::Text(close_socket.to_string()));
            assert_eq!(got, [Incoming::End]);
        }
        for keepalive in [json!({"text": ""}), json!({"text": "", "context_id": "c1"})] {
            assert_eq!(many(keepalive), [json!({"type": "keepalive"})]);
        }
    }

    #[test]
    fn stream_input_has_one_context_ended_by_empty_text() {
        let one = |v| texts(Contexts::One, v);
        assert_eq!(
            one(json!({"text": "Hi. ", "try_trigger_generation": true, "flush": true})),
            [
                json!({"type": "text", "context_id": "0", "text": "Hi. "}),
                json!({"type": "flush", "context_id": "0"})
            ]
        );
        assert_eq!(
            one(json!({"text": ""})),
            [json!({"type": "close", "context_id": "0"})]
        );
        assert_eq!(one(json!({})), [json!({"type": "keepalive"})]);
    }

    #[test]
    fn untranslatable_requests_are_rejected() {
        let rejected =
            |v: Value| match translate(Contexts::Many, Incoming::Text(v.to_string())).pop() {
                Some(Incoming::Rejected { context_id, error }) => (context_id, error.code()),
                other => panic!("not rejected: {other:?}"),
            };
        assert_eq!(rejected(json!({"text": "x"})), (None, "invalid_message"));
        let speed = json!({"text": "x", "context_id": "a", "voice_settings": {"speed": "fast"}});
        assert_eq!(rejected(speed), (Some("a".into()), "invalid_value"));
        assert_eq!(
            rejected(json!({"text": 5, "context_id": "a"})),
            (None, "invalid_message")
        );
        let bad = translate(Contexts::One, Incoming::Text("{nope".into())).pop();
        assert!(matches!(
            bad,
            Some(Incoming::Rejected {
                error: WsError::InvalidJson(_),
                ..
            })
        ));
        assert_eq!(translate(Contexts::One, Incoming::Ping), [Incoming::Ping]);
    }

    proptest! {
        /// Request-shaped JSON with any field values never panics, what fails is a non-fatal
        /// error and what is translated is valid v1 (on both WebSockets; the fuzz check).
        #[test]
        fn request_shaped_json_never_panics(v in object_with(
            prop::option::of(json_value()),
            &["text", "context_id", "voice_settings", "flush", "close_context", "close_socket"],
        )) {
            crate::fuzz_entry::elevenlabs_request(v.to_string().as_bytes());
        }
    }
}
