//! Word timestamps over protocol v1 with the real tiny model and a real WebSocket: opted in per
//! session or per context, every word once and in order, monotone times inside the audio,
//! each `timestamps` event before or with the frame that ends its words, segments on one time
//! base, and `cancelled` listing the words spoken.

use crate::common::TestServer;
use crate::ws_client::{connect, ContextRun, Received};
use serde_json::{json, Value};

/// Long enough for several text windows of the tiny tokenizer.
const FIRST: &str = "Hello there, this is a streaming test of the tiny voice,";
const SECOND: &str = " spoken frame by frame with timestamps.";

/// Milliseconds of 16-bit mono audio at 24 kHz in `bytes`.
fn ms(bytes: usize) -> u64 {
    (bytes / 2) as u64 * 1000 / 24_000
}

/// The words of every `timestamps` event of `run`, checking on the way that each event's
/// words end within the audio up to and including the frame after it.
fn timed_words(run: &ContextRun) -> Vec<Value> {
    let mut words = Vec::new();
    for (frames_before, event) in &run.events {
        if event["type"] != "timestamps" {
            continue;
        }
        let through: usize = run.frames[..(*frames_before + 1).min(run.frames.len())]
            .iter()
            .map(|(_, p)| p.len())
            .sum();
        for w in event["words"].as_array().unwrap() {
            assert!(
                w["end_ms"].as_u64().unwrap() <= ms(through),
                "{w} announced after the audio that ends it ({} ms)",
                ms(through)
            );
            words.push(w.clone());
        }
    }
    words
}

fn check_times(words: &[Value], audio_ms: u64) {
    let mut previous = 0;
    for w in words {
        let (start, end) = (
            w["start_ms"].as_u64().unwrap(),
            w["end_ms"].as_u64().unwrap(),
        );
        assert!(
            previous <= start && start <= end && end <= audio_ms,
            "{w} (audio {audio_ms} ms)"
        );
        previous = end;
    }
}

fn spelled(words: &[Value]) -> Vec<&str> {
    words.iter().map(|w| w["word"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timestamps_cover_every_word_across_a_flush() {
    let server = TestServer::ready(|_| {}).await;
    let mut client = connect(server.addr, "").await;
    let (configured, _) = client.configure(json!({"timestamps": true})).await;
    assert_eq!(configured["timestamps"], true);
    client.text("a", FIRST).await;
    client
        .send(json!({"type": "flush", "context_id": "a"}))
        .await;
    client.text("a", SECOND).await;
    client.close_context("a").await;
    let run = client.run("a").await;
    let done = run.event("context.done");
    let audio_ms = done["audio_ms"].as_u64().unwrap();
    let words = timed_words(&run);
    let whole = format!("{FIRST}{SECOND}");
    let expected: Vec<&str> = whole.split_whitespace().collect();
    assert_eq!(spelled(&words), expected);
    check_times(&words, audio_ms);
    // The second segment's words start after the first segment's audio.
    let flushed_at = run
        .events
        .iter()
        .find(|(_, e)| e["type"] == "flushed")
        .map(|(n, _)| *n)
        .unwrap();
    let first_audio: usize = run.frames[..flushed_at].iter().map(|(_, p)| p.len()).sum();
    let spoken_first = FIRST.split_whitespace().count();
    assert!(words[spoken_first]["start_ms"].as_u64().unwrap() >= ms(first_audio));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_are_per_context_and_cancelled_lists_the_words_spoken() {
    let server = TestServer::ready(|_| {}).await;
    let mut client = connect(server.addr, "").await;
    // Without opting in: no timestamps.
    let plain = client.speak("plain", FIRST).await;
    assert!(!plain.types().contains(&"timestamps".to_string()));
    // Opted in on the first text of the context only.
    let text = format!("{FIRST}{SECOND}");
    client
        .send(json!({"type": "text", "context_id": "t", "text": text, "timestamps": true}))
        .await;
    client.close_context("t").await;
    let run = client.run("t").await;
    let words = timed_words(&run);
    assert_eq!(spelled(&words), text.split_whitespace().collect::<Vec<_>>());
    // Cancel after the first announced words.
    client
        .send(json!({"type": "text", "context_id": "c", "text": text, "timestamps": true}))
        .await;
    let mut announced = Vec::new();
    let mut audio = 0;
    while announced.is_empty() {
        match client.next().await {
            Received::Event(e) if e["type"] == "timestamps" => {
                announced.extend(e["words"].as_array().unwrap().iter().cloned())
            }
            Received::Event(e) if e["type"] == "error" => panic!("{e}"),
            Received::Frame(_, payload) => audio += payload.len(),
            _ => {}
        }
    }
    client
        .send(json!({"type": "cancel", "context_id": "c"}))
        .await;
    let (before, cancelled) = client.until("cancelled", Some("c")).await;
    for r in before {
        match r {
            Received::Frame(_, payload) => audio += payload.len(),
            Received::Event(e) if e["type"] == "timestamps" => {
                announced.extend(e["words"].as_array().unwrap().iter().cloned())
            }
            _ => {}
        }
    }
    let sent_ms = cancelled["audio_sent_ms"].as_u64().unwrap();
    assert_eq!(sent_ms, ms(audio));
    let spoken: Vec<Value> = announced
        .iter()
        .filter(|w| w["end_ms"].as_u64().unwrap() <= sent_ms)
        .cloned()
        .collect();
    assert_eq!(cancelled["words"], Value::Array(spoken));
}
