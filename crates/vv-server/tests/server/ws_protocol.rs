//! Protocol v1 over a real server (127.0.0.1:0, tiny fixture model): session.ready, streamed
//! text == one message, flush / close / cancel with frame flags, sequence numbers and offsets,
//! overload, encodings and rates, idle timeouts, draining and metrics.

use std::time::{Duration, Instant};

use crate::common::{PromText, TestServer, VOICE};
use crate::ws_client::{connect, refused, ContextRun, Received};
use serde_json::json;
use vv_audio::resample::resampled_len;
use vv_audio::{g711, pcm, FrameHeader};

/// A sentence long enough for several text windows of the tiny tokenizer.
const SENTENCE: &str =
    "Hello there, this is a streaming test of the tiny voice, spoken frame by frame.";

/// Checks the frames of one context: seq from `seq0`, offsets from `offset0` summing the
/// payload samples, FIRST on the first and LAST on the last frame only. Returns the samples.
fn check_segment(
    frames: &[(FrameHeader, Vec<u8>)],
    seq0: u32,
    offset0: u32,
    bytes_per_sample: usize,
) -> u32 {
    assert!(
        frames.len() >= 2,
        "a segment with audio has at least one frame and the LAST frame"
    );
    let mut offset = offset0;
    for (i, (h, payload)) in frames.iter().enumerate() {
        assert_eq!(h.seq, seq0 + i as u32, "seq of frame {i}");
        assert_eq!(h.sample_offset, offset, "offset of frame {i}");
        assert_eq!(h.is_first(), i == 0, "FIRST flag of frame {i}");
        assert_eq!(h.is_last(), i + 1 == frames.len(), "LAST flag of frame {i}");
        assert_eq!(payload.len() % bytes_per_sample, 0);
        offset += (payload.len() / bytes_per_sample) as u32;
    }
    offset - offset0
}

fn s16_samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

async fn metrics(server: &TestServer) -> PromText {
    let (_, _, body) = server.get("/metrics").await;
    PromText::parse(std::str::from_utf8(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ready_announces_model_defaults_and_limits() {
    let server = TestServer::ready(|s| s.limits.max_text_chars = 1234).await;
    let client = connect(server.addr, "?encoding=mulaw&sample_rate=8000&voice=tiny").await;
    let r = &client.ready;
    assert_eq!(r["protocol_version"], 1);
    assert_eq!(r["model"], "vibevoice-realtime-0.5b");
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["native_sample_rate"], 24_000);
    assert_eq!(r["defaults"]["encoding"], "mulaw");
    assert_eq!(r["defaults"]["sample_rate"], 8000);
    assert_eq!(r["defaults"]["voice"], VOICE);
    assert_eq!(r["defaults"]["diffusion_steps"], 5);
    assert_eq!(r["limits"]["max_text_chars"], 1234);
    assert_eq!(r["voices"], json!([VOICE]));
    assert_eq!(
        r["encodings"],
        json!(["pcm_s16le", "pcm_f32le", "mulaw", "alaw", "mp3"])
    );
    assert_eq!(
        r["sample_rates"],
        json!([8000, 16000, 22050, 24000, 32000, 44100, 48000])
    );
    // Bad query defaults are refused before the upgrade.
    for q in ["?encoding=aac", "?sample_rate=11025", "?voice=..%2Ftiny"] {
        assert_eq!(refused(server.addr, q, None).await.0, 400, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_gives_the_same_audio_bytes_as_one_message() {
    let server = TestServer::ready(|_| {}).await;
    let mut c = connect(server.addr, "").await;
    let (configured, warnings) = c.configure(json!({"seed": 42})).await;
    assert_eq!(configured["seed"], 42);
    assert!(warnings.is_empty(), "{warnings:?}");

    let whole = c.speak("whole", SENTENCE).await;
    // The same text in uneven pieces, cutting words and punctuation.
    let chars: Vec<char> = SENTENCE.chars().collect();
    for piece in chars.chunks(7) {
        c.text("pieces", &piece.iter().collect::<String>()).await;
    }
    c.close_context("pieces").await;
    let pieces = c.run("pieces").await;

    for run in [&whole, &pieces] {
        assert_eq!(
            run.types().first().map(String::as_str),
            Some("context.created")
        );
        assert_eq!(run.types().last().map(String::as_str), Some("context.done"));
        check_segment(&run.frames, 0, 0, 2);
    }
    let (a, b) = (whole.payload(), pieces.payload());
    assert!(
        a.len() >= 2 * 3200,
        "at least one frame of audio: {} bytes",
        a.len()
    );
    assert_eq!(a.len(), b.len());
    assert!(a == b, "streamed text must give byte-identical audio");
    assert_ne!(
        whole.event("context.created")["context_num"],
        pieces.event("context.created")["context_num"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_closes_a_segment_and_the_context_goes_on() {
    let server = TestServer::ready(|_| {}).await;
    let mut c = connect(server.addr, "").await;
    c.text("ctx", "Hello there, my friend. How").await;
    c.send(json!({"type": "flush", "context_id": "ctx"})).await;
    // `flushed` comes after the last frame of the first segment.
    let (before, flushed) = c.until("flushed", Some("ctx")).await;
    assert_eq!(flushed["context_id"], "ctx");
    let mut num = None;
    let mut seg1 = Vec::new();
    for r in before {
        match r {
            Received::Event(ev) if ev["type"] == "context.created" => {
                assert!(seg1.is_empty(), "context.created comes before audio");
                num = ev["context_num"].as_u64();
            }
            Received::Frame(h, p) => {
                assert_eq!(Some(u64::from(h.context_num)), num);
                seg1.push((h, p));
            }
            _ => {}
        }
    }
    let samples1 = check_segment(&seg1, 0, 0, 2);

    // More text starts a second segment: seq and offsets continue, FIRST/LAST mark it.
    c.text("ctx", " are you today? I hope you are well.").await;
    c.close_context("ctx").await;
    let rest: ContextRun = c.run("ctx").await;
    assert_eq!(rest.types(), ["context.done"]);
    let samples2 = check_segment(&rest.frames, seg1.len() as u32, samples1, 2);
    let done = rest.event("context.done");
    let total_ms = u64::from(samples1 + samples2) * 1000 / 24_000;
    assert_eq!(done["audio_ms"], total_ms);
    assert!(done["ttfa_ms"].as_u64().is_some(), "{done}");
    assert!(done["rtf"].as_f64().is_some_and(|r| r > 0.0), "{done}");

    // A flush with nothing buffered is answered at once; close with nothing buffered is done.
    c.text("ctx2", "Short words here and there.").await;
    c.send(json!({"type": "text", "context_id": "ctx2", "text": "", "flush": true}))
        .await;
    c.until("flushed", Some("ctx2")).await;
    c.send(json!({"type": "flush", "context_id": "ctx2"})).await;
    c.until("flushed", Some("ctx2")).await;
    c.close_context("ctx2").await;
    c.until("context.done", Some("ctx2")).await;

    let m = metrics(&server).await;
    assert!(m.value("vibevoice_contexts_total", &[("outcome", "done")]) >= 2.0);
    assert!(m.value("vibevoice_ttfa_seconds_count", &[]) >= 2.0);
    assert!(m.value("vibevoice_rtf_count", &[]) >= 2.0);
    assert!(m.value("vibevoice_audio_seconds_total", &[]) > 0.0);
    assert_eq!(m.value("vibevoice_ws_sessions_active", &[]), 1.0);
    assert_eq!(m.value("vibevoice_contexts_active", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_cache_gauge_counts_an_open_context_and_returns_to_zero() {
    let server = TestServer::ready(|_| {}).await;
    let mut c = connect(server.addr, "").await;
    c.text("ctx", "Hello there, my friend. How are you today? I hope")
        .await;
    c.until("context.created", Some("ctx")).await;
    let mut bytes = 0.0;
    for _ in 0..500 {
        bytes = metrics(&server)
            .await
            .value("vibevoice_kv_cache_bytes", &[]);
        if bytes > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(bytes > 0.0, "an open context's caches are counted");
    c.close_context("ctx").await;
    c.until("context.done", Some("ctx")).await;
    server.wait_idle().await;
    let m = metrics(&server).await;
    assert_eq!(m.value("vibevoice_kv_cache_bytes", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_audio_at_once() {
    let server = TestServer::ready(|_| {}).await;
    let mut c = connect(server.addr, "").await;
    c.text("long", &format!("{SENTENCE} {SENTENCE} {SENTENCE}"))
        .await;
    let (_, created) = c.until("context.created", Some("long")).await;
    let num = created["context_num"].as_u64().unwrap() as u32;
    loop {
        if let Received::Frame(h, _) = c.next().await {
            assert_eq!(h.context_num, num);
            break;
        }
    }
    c.send(json!({"type": "cancel", "context_id": "long"}))
        .await;
    let (_, cancelled) = c.until("cancelled", Some("long")).await;
    assert!(
        cancelled["audio_sent_ms"].as_u64().unwrap() >= 133,
        "{cancelled}"
    );
    // Nothing more for that context.
    while let Some(r) = c.next_within(Duration::from_millis(700)).await {
        match r {
            Received::Frame(h, _) => assert_ne!(h.context_num, num, "audio after cancelled"),
            Received::Event(ev) => assert_ne!(ev["context_id"], "long", "{ev}"),
            Received::Closed(code) => panic!("closed: {code:?}"),
        }
    }
    // Cancelling it again is an unknown context; the session goes on.
    c.send(json!({"type": "cancel", "context_id": "long"}))
        .await;
    assert_eq!(c.error().await["code"], "unknown_context");
    let run = c.speak("next", SENTENCE).await;
    assert!(!run.frames.is_empty());
    // cancel "*" cancels every open context.
    c.text("x", SENTENCE).await;
    c.text("y", SENTENCE).await;
    c.send(json!({"type": "cancel", "context_id": "*"})).await;
    let mut cancelled = Vec::new();
    while cancelled.len() < 2 {
        if let Received::Event(ev) = c.next().await {
            if ev["type"] == "cancelled" {
                cancelled.push(ev["context_id"].as_str().unwrap().to_string());
            }
        }
    }
    cancelled.sort();
    assert_eq!(cancelled, ["x", "y"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.state.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.state.in_flight(),
        0,
        "cancelled contexts free their slots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_context_without_a_free_slot_is_refused_but_not_fatal() {
    let server =
        TestServer::ready(|s| s.limits.max_slots = vv_server::config::MaxSlots::Fixed(1)).await;
    let mut c = connect(server.addr, "").await;
    c.text("a", "Holding the only slot while waiting for more")
        .await;
    c.until("context.created", Some("a")).await;
    c.text("b", "No room for me.").await;
    let err = c.error().await;
    assert_eq!(
        (err["code"].as_str(), err["context_id"].as_str()),
        (Some("overloaded"), Some("b"))
    );
    assert_eq!(err["fatal"], false);
    // A new session is refused before the upgrade while the slot is taken.
    let (status, retry_after) = refused(server.addr, "", None).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    // `b` was never created: closing it is an unknown context.
    c.close_context("b").await;
    assert_eq!(c.error().await["code"], "unknown_context");
    c.close_context("a").await;
    c.until("context.done", Some("a")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.state.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = c.speak("b", "Now there is room for me.").await;
    assert_eq!(
        run.types().first().map(String::as_str),
        Some("context.created")
    );
    assert_eq!(run.types().last().map(String::as_str), Some("context.done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_and_sample_rates_give_the_right_bytes() {
    let server = TestServer::ready(|_| {}).await;
    let mut c = connect(server.addr, "").await;
    c.configure(json!({"seed": 3})).await;
    let text = "Counting the bytes of every encoding and rate.";
    let reference = c.speak("s16", text).await;
    let s16 = s16_samples(&reference.payload());
    let n = s16.len() as u64;
    assert!(n > 0);

    for rate in [8000u32, 16_000, 22_050, 44_100, 48_000] {
        c.configure(json!({"sample_rate": rate})).await;
        let run = c.speak(&format!("s16-{rate}"), text).await;
        assert_eq!(run.event("context.created")["sample_rate"], rate);
        check_segment(&run.frames, 0, 0, 2);
        assert_eq!(
            run.payload().len() as u64,
            2 * resampled_len(n, rate),
            "rate {rate}"
        );
    }
    c.configure(json!({"sample_rate": 24000})).await;
    for encoding in ["pcm_f32le", "mulaw", "alaw"] {
        c.configure(json!({"encoding": encoding})).await;
        let run = c.speak(encoding, text).await;
        assert_eq!(run.event("context.created")["encoding"], encoding);
        let bytes = run.payload();
        match encoding {
            "pcm_f32le" => {
                assert_eq!(bytes.len() as u64, 4 * n);
                for (i, b) in bytes.chunks_exact(4).enumerate() {
                    let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    assert!((-1.0..=1.0).contains(&f));
                    assert_eq!(pcm::f32_to_s16(f), s16[i], "sample {i}");
                }
            }
            "mulaw" => {
                assert_eq!(bytes.len() as u64, n);
                let expected: Vec<u8> = s16.iter().map(|&s| g711::linear_to_mulaw(s)).collect();
                assert_eq!(bytes, expected);
            }
            _ => {
                assert_eq!(bytes.len() as u64, n);
                let expected: Vec<u8> = s16.iter().map(|&s| g711::linear_to_alaw(s)).collect();
                assert_eq!(bytes, expected);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_closed_with_4408() {
    let server = TestServer::ready(|s| s.limits.session_idle_timeout_secs = 1).await;
    let mut c = connect(server.addr, "").await;
    let started = Instant::now();
    let (code, events) = c.closed().await;
    assert_eq!(code, Some(4408));
    let last = events.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("error"), Some("idle_timeout"))
    );
    assert_eq!(last["fatal"], true);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    // Keepalives keep a session open.
    let mut c = connect(server.addr, "").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.send(json!({"type": "keepalive"})).await;
    }
    assert!(c.next_within(Duration::from_millis(300)).await.is_none());
    let (code, _) = c.closed().await;
    assert_eq!(code, Some(4408));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_waiting_too_long_for_text_is_closed() {
    let server = TestServer::ready(|s| {
        s.limits.context_idle_timeout_secs = 1;
        s.limits.session_idle_timeout_secs = 30;
    })
    .await;
    let mut c = connect(server.addr, "").await;
    c.text("slow", "The model waits for the rest of this sentence")
        .await;
    let run = c.run("slow").await;
    assert_eq!(run.types(), ["context.created", "warning", "context.done"]);
    assert_eq!(run.event("warning")["code"], "context_idle_timeout");
    assert!(!run.frames.is_empty(), "the buffered text is spoken");
    assert!(run.frames.last().unwrap().0.is_last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_open_contexts_then_closes_with_1001() {
    let server = TestServer::ready(|_| {}).await;
    let mut c = connect(server.addr, "").await;
    c.text("open", SENTENCE).await;
    c.until("context.created", Some("open")).await;
    server.state.start_draining();
    let (before, done) = c.until("context.done", Some("open")).await;
    let warned = before
        .iter()
        .any(|r| matches!(r, Received::Event(ev) if ev["code"] == "shutting_down"));
    assert!(warned, "{before:?}");
    assert!(done["audio_ms"].as_u64().unwrap() > 0);
    let (code, _) = c.closed().await;
    assert_eq!(code, Some(1001));
    let (status, retry_after) = refused(server.addr, "", None).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active = metrics(&server)
            .await
            .value("vibevoice_ws_sessions_active", &[]);
        if active == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "sessions still active: {active}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
