//! Fuzzing entry points (doc-hidden, not part of the API): the checks that the `fuzz/` targets,
//! the corpus replay test and the parsers' property tests run on one input. Each panics (the
//! fuzzer's finding) when its parser panics or breaks the invariant it documents.

use serde_json::Value;

use crate::config::Settings;
use crate::dialects::{cartesia, elevenlabs};
use crate::routes::speech::request::SpeechRequest;
use crate::ws::messages::{self, ClientMessage, ALL_CONTEXTS, MAX_CONTEXT_ID_BYTES};
use crate::ws::Incoming;

/// The codes a client message that does not parse may get.
const MESSAGE_CODES: [&str; 3] = ["invalid_json", "invalid_message", "unknown_message_type"];

/// A protocol v1 text frame (`data`, when it is UTF-8): it parses (an object with a string
/// `type`), or it gets a non-fatal error with one of the documented codes; a parsed context id
/// is one the protocol allows.
pub fn ws_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = messages::parse(text);
    if parsed.is_ok() {
        let value: Value = serde_json::from_str(text).expect("a parsed message is JSON");
        assert!(value.get("type").is_some_and(Value::is_string), "{text}");
    }
    match parsed {
        Ok(
            ClientMessage::Text { context_id, .. }
            | ClientMessage::Flush { context_id }
            | ClientMessage::Close { context_id }
            | ClientMessage::Cancel(messages::CancelTarget::One(context_id)),
        ) => assert!(valid_context_id(&context_id), "{context_id:?}"),
        Ok(_) => {}
        Err(e) => {
            assert!(!e.is_fatal(), "fatal error for a text frame: {e:?}");
            assert!(MESSAGE_CODES.contains(&e.code()), "code {}", e.code());
        }
    }
}

/// A Cartesia request (`data`, when it is UTF-8): see [`translations_are_valid`].
pub fn cartesia_request(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        translations_are_valid(cartesia::inbound::translate(Incoming::Text(text.into())));
    }
}

/// An ElevenLabs request (`data`, when it is UTF-8) on both of its WebSockets: see
/// [`translations_are_valid`].
pub fn elevenlabs_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for contexts in [
        elevenlabs::inbound::Contexts::Many,
        elevenlabs::inbound::Contexts::One,
    ] {
        translations_are_valid(elevenlabs::inbound::translate(
            contexts,
            Incoming::Text(text.into()),
        ));
    }
}

/// What a dialect made of one request: rejections are non-fatal, and every protocol v1 message
/// it produced parses, unless it is about a context id the protocol refuses (which the session
/// then reports as a non-fatal `invalid_message`).
fn translations_are_valid(items: Vec<Incoming>) {
    assert!(!items.is_empty(), "a request translated into nothing");
    for item in items {
        match item {
            Incoming::Text(message) => {
                let refused_id = serde_json::from_str::<Value>(&message)
                    .ok()
                    .and_then(|v| {
                        v.get("context_id")
                            .and_then(Value::as_str)
                            .map(String::from)
                    })
                    .is_some_and(|id| id != ALL_CONTEXTS && !valid_context_id(&id));
                match messages::parse(&message) {
                    Ok(_) => {}
                    Err(e) if refused_id && e.code() == "invalid_message" => {}
                    Err(e) => panic!("translated into an invalid v1 message {message}: {e:?}"),
                }
            }
            Incoming::Rejected { error, .. } => {
                assert!(!error.is_fatal(), "fatal rejection: {error:?}")
            }
            // ElevenLabs' `close_socket` ends the session.
            Incoming::End => {}
            other => panic!("a text request translated into {other:?}"),
        }
    }
}

/// A context id the protocol accepts in `text`, `flush` and `close`.
fn valid_context_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CONTEXT_ID_BYTES && id != ALL_CONTEXTS
}

/// A `POST /v1/audio/speech` body: it is refused with a 4xx and a code, or accepted with a
/// speakable input and values within the service's limits.
pub fn speech_request(data: &[u8]) {
    let settings = Settings::default();
    match SpeechRequest::parse(data, &settings) {
        Ok(r) => {
            assert!(!r.input.trim().is_empty(), "accepted a blank input");
            assert!(r.input.chars().count() <= settings.limits.max_text_chars);
            assert!(r.diffusion_steps <= settings.limits.max_diffusion_steps);
        }
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?} is not a 4xx");
            assert!(!e.code().is_empty());
        }
    }
}
