//! Protocol v1 events and audio frames -> ElevenLabs messages: `{"audio", "isFinal": false,
//! "contextId"}` per audio frame, with `alignment` and `normalizedAlignment` when word
//! timestamps came since the previous one; `{"isFinal": true, "contextId"}` when a
//! context is done (on `stream-input` followed by the close, 1000); `{"error", "message",
//! "contextId"}` for errors. Cancelled contexts and events ElevenLabs has no counterpart for
//! (`session.ready`, `context.created`, `flushed`, `warning`, `cancelled`) send nothing.
//!
//! Alignment: each word's estimated time is spread evenly over its characters, and each word
//! is followed by a space of zero duration (so a client that splits on spaces sees every word
//! complete). The two carry the same characters on two time bases, one for each way the
//! released clients read them: in `alignment`, as in ElevenLabs' stream, times count from the
//! end of the context's previous alignment, so the running sum of `charStartTimesMs[-1] +
//! charDurationsMs[-1]` over the messages is the time from the context's first sample
//! (Pipecat's `ElevenLabsTTSService` adds that sum); in `normalizedAlignment` they count from
//! the context's first sample (LiveKit's ElevenLabs plugin reads it and adds nothing).

use base64::Engine as _;
use serde_json::{json, Value};

use super::inbound::Contexts;
use crate::dialects::codec::{core_event, FrameContexts};
use crate::ws::Outgoing;

/// Character alignment not yet sent, times relative to `base_ms`.
#[derive(Debug, Default)]
struct Alignment {
    base_ms: u64,
    chars: Vec<String>,
    starts: Vec<u64>,
    durations: Vec<u64>,
}

impl Alignment {
    fn push(&mut self, char: String, start_ms: u64, end_ms: u64) {
        self.chars.push(char);
        self.starts.push(start_ms.saturating_sub(self.base_ms));
        self.durations.push(end_ms.saturating_sub(start_ms));
    }

    /// Adds a word spread over its characters, then a zero-length space.
    fn word(&mut self, word: &str, start_ms: u64, end_ms: u64) {
        let n = word.chars().count().max(1) as u64;
        let span = end_ms.saturating_sub(start_ms);
        let at = |k: u64| start_ms + span * k / n;
        for (k, c) in (0..).zip(word.chars()) {
            self.push(c.to_string(), at(k), at(k + 1));
        }
        self.push(" ".to_string(), end_ms, end_ms);
    }

    /// The alignment with its start times shifted by `offset_ms`.
    fn to_json(&self, offset_ms: u64) -> Value {
        let starts: Vec<u64> = self.starts.iter().map(|s| s + offset_ms).collect();
        json!({"chars": self.chars, "charStartTimesMs": starts,
               "charDurationsMs": self.durations})
    }

    /// Adds `alignment` (times from the previous alignment's end) and `normalizedAlignment`
    /// (times from the context's first sample) to `message`.
    fn attach(&self, message: &mut Value) {
        message["alignment"] = self.to_json(0);
        message["normalizedAlignment"] = self.to_json(self.base_ms);
    }
}

/// What the codec remembers per context.
#[derive(Debug, Default)]
struct Known {
    /// End of the last word aligned, in ms from the context's first sample.
    aligned_ms: u64,
    /// Alignment waiting for the next audio message.
    pending: Option<Alignment>,
}

/// Translates the core's output of one session.
pub struct Outbound {
    contexts: FrameContexts<Known>,
    /// `stream-input`: the socket closes after its context's `isFinal`.
    close_after_final: bool,
}

impl Outbound {
    /// The codec of a `multi-stream-input` or `stream-input` session.
    pub fn new(contexts: Contexts) -> Self {
        Self {
            contexts: FrameContexts::default(),
            close_after_final: contexts == Contexts::One,
        }
    }

    /// The ElevenLabs messages for one item of the core's output.
    pub fn translate(&mut self, item: Outgoing) -> Vec<Outgoing> {
        match item {
            Outgoing::Text(text) => core_event(&text)
                .map(|event| self.event(&event))
                .unwrap_or_default(),
            Outgoing::Binary(frame) => self.audio(&frame).into_iter().collect(),
            close @ Outgoing::Close { .. } => vec![close],
        }
    }

    fn event(&mut self, event: &Value) -> Vec<Outgoing> {
        let id = event.get("context_id").and_then(Value::as_str);
        let text = |v: Value| Outgoing::Text(v.to_string());
        match (event["type"].as_str(), id) {
            (Some("context.created"), Some(_)) => {
                self.contexts.created(event, Known::default());
                Vec::new()
            }
            (Some("timestamps"), Some(id)) => {
                if let (Some(known), Some(words)) =
                    (self.contexts.get_mut(id), event["words"].as_array())
                {
                    let pending = known.pending.get_or_insert_with(|| Alignment {
                        base_ms: known.aligned_ms,
                        ..Alignment::default()
                    });
                    for w in words {
                        let (start, end) = (w["start_ms"].as_u64(), w["end_ms"].as_u64());
                        let start = start.unwrap_or(known.aligned_ms).max(known.aligned_ms);
                        let end = end.unwrap_or(start).max(start);
                        pending.word(w["word"].as_str().unwrap_or(""), start, end);
                        known.aligned_ms = end;
                    }
                }
                Vec::new()
            }
            (Some("context.done"), Some(id)) => {
                let mut out = Vec::new();
                if let Some(pending) = self.contexts.forget(id).and_then(|k| k.pending) {
                    let mut message = json!({"audio": "", "isFinal": false, "contextId": id});
                    pending.attach(&mut message);
                    out.push(text(message));
                }
                out.push(text(json!({"isFinal": true, "contextId": id})));
                if self.close_after_final {
                    out.push(Outgoing::Close {
                        code: 1000,
                        reason: "end of input".to_string(),
                    });
                }
                out
            }
            (Some("cancelled"), Some(id)) => {
                self.contexts.forget(id);
                Vec::new()
            }
            (Some("error"), _) => {
                let code = event["code"].as_str().unwrap_or("internal_error");
                let message = event["message"].as_str().unwrap_or(code);
                vec![text(
                    json!({"error": code, "message": message, "contextId": id}),
                )]
            }
            _ => Vec::new(),
        }
    }

    /// An `audio` message for a binary audio frame (frames without samples send nothing).
    fn audio(&mut self, frame: &[u8]) -> Option<Outgoing> {
        let (id, known, payload) = self.contexts.frame(frame)?;
        let audio = base64::engine::general_purpose::STANDARD.encode(payload);
        let mut message = json!({"audio": audio, "isFinal": false, "contextId": id});
        if let Some(pending) = known.pending.take() {
            pending.attach(&mut message);
        }
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
            .filter_map(|i| match i {
                Outgoing::Text(t) => Some(serde_json::from_str(&t).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn created(o: &mut Outbound) {
        let created = json!({"type": "context.created", "context_id": "c", "context_num": 2,
                             "encoding": "pcm_s16le", "sample_rate": 24000});
        assert!(out(o, created).is_empty());
    }

    #[test]
    fn audio_carries_the_alignment_of_the_words_before_it() {
        let mut o = Outbound::new(Contexts::Many);
        created(&mut o);
        let ts = json!({"type": "timestamps", "context_id": "c", "words": [
            {"word": "Hi", "start_ms": 100, "end_ms": 300},
            {"word": "you", "start_ms": 300, "end_ms": 600}]});
        assert!(out(&mut o, ts).is_empty());
        let first = &texts(o.translate(frame(2, &[1, 2, 3, 4])))[0];
        assert_eq!(
            (&first["audio"], &first["isFinal"], &first["contextId"]),
            (&json!("AQIDBA=="), &json!(false), &json!("c"))
        );
        assert_eq!(
            first["alignment"],
            json!({"chars": ["H", "i", " ", "y", "o", "u", " "],
                   "charStartTimesMs": [100, 200, 300, 300, 400, 500, 600],
                   "charDurationsMs": [100, 100, 0, 100, 100, 100, 0]})
        );
        assert_eq!(first["normalizedAlignment"], first["alignment"]);
        // Without new words: no alignment. The next words count from the last end (600).
        let plain = &texts(o.translate(frame(2, &[5, 6])))[0];
        assert!(plain.get("alignment").is_none());
        let ts = json!({"type": "timestamps", "context_id": "c", "words": [
            {"word": "ok", "start_ms": 700, "end_ms": 800}]});
        out(&mut o, ts);
        let done = json!({"type": "context.done", "context_id": "c", "audio_ms": 900,
                          "ttfa_ms": 1, "rtf": 0.1});
        let end = out(&mut o, done);
        assert_eq!(end.len(), 2);
        assert_eq!(
            end[0]["alignment"],
            json!({"chars": ["o", "k", " "], "charStartTimesMs": [100, 150, 200],
                   "charDurationsMs": [50, 50, 0]})
        );
        // LiveKit reads normalizedAlignment and adds nothing: times from the first sample.
        assert_eq!(
            end[0]["normalizedAlignment"],
            json!({"chars": ["o", "k", " "], "charStartTimesMs": [700, 750, 800],
                   "charDurationsMs": [50, 50, 0]})
        );
        assert_eq!(end[1], json!({"isFinal": true, "contextId": "c"}));
        assert!(o.translate(frame(2, &[1, 2])).is_empty());
    }

    #[test]
    fn errors_cancels_and_the_single_context_close() {
        let mut o = Outbound::new(Contexts::Many);
        created(&mut o);
        let error = json!({"type": "error", "context_id": "c", "code": "unknown_voice",
                           "message": "no voice x", "fatal": false});
        assert_eq!(
            out(&mut o, error),
            [json!({"error": "unknown_voice", "message": "no voice x", "contextId": "c"})]
        );
        for quiet in [
            json!({"type": "session.ready"}),
            json!({"type": "flushed", "context_id": "c"}),
            json!({"type": "warning", "code": "short_text", "message": "m"}),
            json!({"type": "cancelled", "context_id": "c", "audio_sent_ms": 0}),
        ] {
            assert!(out(&mut o, quiet).is_empty());
        }
        assert!(o.translate(frame(2, &[1, 2])).is_empty());
        let mut single = Outbound::new(Contexts::One);
        created(&mut single);
        let done = json!({"type": "context.done", "context_id": "c", "audio_ms": 0,
                          "ttfa_ms": null, "rtf": null});
        let items = single.translate(Outgoing::Text(done.to_string()));
        assert!(matches!(
            items.last(),
            Some(Outgoing::Close { code: 1000, .. })
        ));
    }
}
