//! Protocol v1 events and audio frames -> Cartesia messages. Every message carries
//! `context_id` (`null` for session-wide errors: Pipecat reads the field of every message),
//! `status_code` and `done`. Events Cartesia has no counterpart for (`session.ready`,
//! `context.created`, `session.configured`, `warning`, `cancelled`) are not sent.

use std::collections::HashMap;
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::dialects::codec::{core_event, FrameContexts};
use crate::ws::Outgoing;

/// Translates the core's output of one session.
#[derive(Default)]
pub struct Outbound {
    /// Known contexts, each with when its last chunk (or its creation) was sent, for
    /// `step_time`.
    contexts: FrameContexts<Instant>,
    /// Flushes answered per context, for `flush_id`.
    flushes: HashMap<String, u64>,
}

/// The HTTP-like status Cartesia's `error` carries for a v1 error code.
fn status_of(code: &str) -> u16 {
    match code {
        "overloaded" | "session_slot_share" | "too_many_contexts" => 429,
        "internal_error" | "engine_unavailable" | "synthesis_failed" | "shutting_down" => 500,
        _ => 400,
    }
}

impl Outbound {
    /// The Cartesia messages for one item of the core's output.
    pub fn translate(&mut self, item: Outgoing) -> Vec<Outgoing> {
        match item {
            Outgoing::Text(text) => core_event(&text)
                .and_then(|event| self.event(&event))
                .into_iter()
                .collect(),
            Outgoing::Binary(frame) => self.chunk(&frame).into_iter().collect(),
            close @ Outgoing::Close { .. } => vec![close],
        }
    }

    fn event(&mut self, event: &Value) -> Option<Outgoing> {
        let id = event.get("context_id").and_then(Value::as_str);
        let message = match (event["type"].as_str()?, id) {
            ("context.created", Some(_)) => {
                self.contexts.created(event, Instant::now());
                return None;
            }
            ("timestamps", Some(id)) => {
                let words = event["words"].as_array()?;
                let seconds = |key: &str| -> Vec<f64> {
                    words
                        .iter()
                        .map(|w| w[key].as_f64().unwrap_or(0.0) / 1000.0)
                        .collect()
                };
                json!({
                    "type": "timestamps", "context_id": id, "status_code": 206, "done": false,
                    "word_timestamps": {
                        "words": words.iter().map(|w| w["word"].clone()).collect::<Vec<_>>(),
                        "start": seconds("start_ms"),
                        "end": seconds("end_ms"),
                    },
                })
            }
            ("flushed", Some(id)) => {
                let n = self.flushes.entry(id.to_string()).or_default();
                *n += 1;
                json!({"type": "flush_done", "context_id": id, "flush_id": *n,
                       "flush_done": true, "status_code": 206, "done": false})
            }
            ("context.done", Some(id)) => {
                self.forget(id);
                json!({"type": "done", "context_id": id, "status_code": 206, "done": true})
            }
            ("cancelled", Some(id)) => {
                self.forget(id);
                return None;
            }
            ("error", _) => {
                let code = event["code"].as_str().unwrap_or("internal_error");
                let message = event["message"].as_str().unwrap_or(code);
                json!({"type": "error", "context_id": id, "status_code": status_of(code),
                       "done": true, "error": message, "code": code})
            }
            _ => return None,
        };
        Some(Outgoing::Text(message.to_string()))
    }

    fn forget(&mut self, id: &str) {
        self.contexts.forget(id);
        self.flushes.remove(id);
    }

    /// A `chunk` for a binary audio frame (frames without samples send nothing).
    fn chunk(&mut self, frame: &[u8]) -> Option<Outgoing> {
        let (id, last_step, payload) = self.contexts.frame(frame)?;
        let step_time = last_step.elapsed().as_secs_f64() * 1000.0;
        *last_step = Instant::now();
        let data = base64::engine::general_purpose::STANDARD.encode(payload);
        let message = json!({"type": "chunk", "context_id": id, "data": data,
                             "done": false, "status_code": 206, "step_time": step_time});
        Some(Outgoing::Text(message.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::codec::test_frame as frame;

    fn out(o: &mut Outbound, event: Value) -> Vec<Value> {
        texts(o.translate(Outgoing::Text(event.to_string())))
    }

    fn texts(items: Vec<Outgoing>) -> Vec<Value> {
        items
            .into_iter()
            .map(|i| match i {
                Outgoing::Text(t) => serde_json::from_str(&t).unwrap(),
                other => panic!("not text: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn events_become_cartesia_messages() {
        let mut o = Outbound::default();
        let created = json!({"type": "context.created", "context_id": "c", "context_num": 3,
                             "encoding": "pcm_s16le", "sample_rate": 24000});
        assert!(out(&mut o, created).is_empty());
        let chunk = texts(o.translate(frame(3, &[1, 2, 3, 4])));
        assert_eq!(chunk[0]["type"], "chunk");
        assert_eq!(chunk[0]["context_id"], "c");
        assert_eq!(chunk[0]["data"], "AQIDBA==");
        assert_eq!(chunk[0]["status_code"], 206);
        assert_eq!(chunk[0]["done"], false);
        assert!(chunk[0]["step_time"].is_number());
        assert!(o.translate(frame(3, &[])).is_empty());
        assert!(o.translate(frame(9, &[1, 2])).is_empty());
        let ts = json!({"type": "timestamps", "context_id": "c", "words": [
            {"word": "Hi", "start_ms": 0, "end_ms": 250},
            {"word": "there", "start_ms": 250, "end_ms": 1000}]});
        let ts = &out(&mut o, ts)[0];
        assert_eq!(
            ts["word_timestamps"],
            json!({"words": ["Hi", "there"], "start": [0.0, 0.25], "end": [0.25, 1.0]})
        );
        let flushed = json!({"type": "flushed", "context_id": "c"});
        assert_eq!(out(&mut o, flushed.clone())[0]["flush_id"], 1);
        assert_eq!(out(&mut o, flushed)[0]["flush_id"], 2);
        let done = json!({"type": "context.done", "context_id": "c", "audio_ms": 5,
                          "ttfa_ms": 1, "rtf": 0.1});
        assert_eq!(
            out(&mut o, done),
            [json!({"type": "done", "context_id": "c", "status_code": 206, "done": true})]
        );
        assert!(o.translate(frame(3, &[1, 2])).is_empty());
        let error = json!({"type": "error", "code": "unknown_voice", "message": "no voice x",
                           "fatal": false});
        let e = &out(&mut o, error)[0];
        assert_eq!(e["context_id"], Value::Null);
        assert_eq!(
            (e["status_code"].as_u64(), e["error"].as_str()),
            (Some(400), Some("no voice x"))
        );
        for quiet in [
            json!({"type": "session.ready"}),
            json!({"type": "warning", "code": "short_text", "message": "m"}),
            json!({"type": "cancelled", "context_id": "c", "audio_sent_ms": 0}),
        ] {
            assert!(out(&mut o, quiet).is_empty());
        }
        let close = Outgoing::Close {
            code: 1001,
            reason: "bye".into(),
        };
        assert_eq!(o.translate(close.clone()), [close]);
    }
}
