//! The session state machine over channels (`futures::channel::mpsc`), with the real engine on
//! the tiny fixture: event order per context with flushes and a backlog, slow consumers,
//! fatal inputs and their close codes, and (property) any chunking of the text gives the
//! audio bytes of the whole text.

use crate::common;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{json, Value};
use tempfile::TempDir;
use vv_audio::FrameHeader;
use vv_device::{DeviceRequest, SystemProbe};
use vv_engine::EngineHandle;
use vv_server::config::Settings;
use vv_server::engine_options::engine_options;
use vv_server::metrics::MetricsObserver;
use vv_server::ws::transport::TransportFailure;
use vv_server::ws::{run_session, Incoming, Outgoing, SessionConfig};
use vv_server::AppState;

const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A loaded engine installed in an app state (and the voices directory it reads).
struct Service {
    state: AppState,
    engine: EngineHandle,
    _voices: TempDir,
}

impl Service {
    fn load(configure: impl FnOnce(&mut Settings)) -> Self {
        let voices = tempfile::tempdir().unwrap();
        std::fs::copy(
            format!("{}/golden/voice_preset.pt", common::TINY),
            voices.path().join("tiny.pt"),
        )
        .unwrap();
        let mut settings = common::tiny_settings(voices.path().to_path_buf(), DeviceRequest::Cpu);
        configure(&mut settings);
        let state = AppState::new(settings).unwrap();
        let observer = Arc::new(MetricsObserver(state.metrics().clone()));
        let engine = vv_engine::load_engine(
            &engine_options(state.settings()),
            &SystemProbe::new(),
            observer,
        )
        .unwrap();
        state.set_engine(engine.clone(), None);
        Self {
            state,
            engine,
            _voices: voices,
        }
    }

    fn defaults(&self) -> SessionConfig {
        SessionConfig::defaults(self.state.settings(), self.engine.info())
    }

    /// Starts a session; `outbound` is the capacity of the channel to the client.
    fn session(&self, config: SessionConfig, outbound: usize) -> Peer {
        let (to_server, from_client) = mpsc::channel::<Incoming>(16);
        let (to_client, from_server) = mpsc::channel::<Outgoing>(outbound);
        let task = tokio::spawn(run_session(
            self.state.clone(),
            self.engine.clone(),
            config,
            to_client,
            from_client,
        ));
        Peer {
            tx: to_server,
            rx: from_server,
            task,
        }
    }
}

/// The client's ends of a session.
struct Peer {
    tx: mpsc::Sender<Incoming>,
    rx: mpsc::Receiver<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

/// What the client saw, decoded.
#[derive(Debug, Clone)]
enum Seen {
    Event(Value),
    Frame(FrameHeader, Vec<u8>),
    Close(u16),
}

impl Peer {
    async fn send(&mut self, message: Value) {
        self.tx
            .send(Incoming::Text(message.to_string()))
            .await
            .unwrap();
    }

    async fn text(&mut self, id: &str, text: &str) {
        self.send(json!({"type": "text", "context_id": id, "text": text}))
            .await;
    }

    async fn next(&mut self) -> Seen {
        let out = tokio::time::timeout(READ_TIMEOUT, self.rx.next())
            .await
            .expect("nothing from the session")
            .expect("the session ended");
        match out {
            Outgoing::Text(t) => Seen::Event(serde_json::from_str(&t).unwrap()),
            Outgoing::Binary(b) => {
                let (h, p) = FrameHeader::decode(&b).unwrap();
                Seen::Frame(h, p.to_vec())
            }
            Outgoing::Close { code, .. } => Seen::Close(code),
        }
    }

    /// Reads until `count` events of `kind` have arrived; returns everything seen.
    async fn until_count(&mut self, kind: &str, count: usize) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut found = 0;
        while found < count {
            let s = self.next().await;
            if matches!(&s, Seen::Event(ev) if ev["type"] == kind) {
                found += 1;
            }
            seen.push(s);
        }
        seen
    }

    /// Reads the session's last words: the events before its close frame, and the code.
    async fn closing(&mut self) -> (Vec<Value>, u16) {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Seen::Close(code) => return (events, code),
                Seen::Event(ev) => events.push(ev),
                Seen::Frame(..) => {}
            }
        }
    }
}

/// The items of context `id` (with number `num`) in arrival order, as labels.
fn labels(seen: &[Seen], id: &str, num: u32) -> Vec<String> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Event(ev) if ev["context_id"] == id => {
                Some(ev["type"].as_str().unwrap().to_string())
            }
            Seen::Frame(h, _) if h.context_num == num => {
                let mut l = String::from("audio");
                if h.is_first() {
                    l.push_str("+first");
                }
                if h.is_last() {
                    l.push_str("+last");
                }
                Some(l)
            }
            _ => None,
        })
        .collect()
}

fn context_num(seen: &[Seen], id: &str) -> u32 {
    seen.iter()
        .find_map(|s| match s {
            Seen::Event(ev) if ev["type"] == "context.created" && ev["context_id"] == id => {
                ev["context_num"].as_u64()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no context.created for {id}")) as u32
}

/// Frames of context `num`, checked for contiguous seq and sample offsets.
fn check_contiguous(seen: &[Seen], num: u32) {
    let (mut seq, mut offset) = (0u32, 0u32);
    for s in seen {
        if let Seen::Frame(h, p) = s {
            if h.context_num == num {
                assert_eq!((h.seq, h.sample_offset), (seq, offset));
                seq += 1;
                offset += (p.len() / 2) as u32;
            }
        }
    }
    assert!(seq > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_their_order_per_context_with_flushes_and_a_backlog() {
    let service = Service::load(|_| {});
    let mut peer = service.session(service.defaults(), 64);
    assert!(matches!(peer.next().await, Seen::Event(ev) if ev["type"] == "session.ready"));
    // Everything at once: A's second text arrives while its flushed first segment still runs.
    peer.text("A", "Hello there my good friend, how").await;
    peer.text("B", "Another voice speaks at the same time.")
        .await;
    peer.send(json!({"type": "flush", "context_id": "A"})).await;
    peer.text("A", " are you doing today?").await;
    peer.send(json!({"type": "close", "context_id": "B"})).await;
    peer.send(json!({"type": "close", "context_id": "A"})).await;
    let seen = peer.until_count("context.done", 2).await;

    let (a, b) = (context_num(&seen, "A"), context_num(&seen, "B"));
    assert_ne!(a, b);
    let la = labels(&seen, "A", a);
    let flushed = la
        .iter()
        .position(|l| l == "flushed")
        .expect("A was flushed");
    assert_eq!(la.first().map(String::as_str), Some("context.created"));
    assert_eq!(la.last().map(String::as_str), Some("context.done"));
    assert_eq!(la[1], "audio+first", "{la:?}");
    assert_eq!(la[flushed - 1], "audio+last", "{la:?}");
    assert_eq!(la[flushed + 1], "audio+first", "{la:?}");
    assert_eq!(la[la.len() - 2], "audio+last", "{la:?}");
    assert!(
        la[2..flushed - 1]
            .iter()
            .chain(&la[flushed + 2..la.len() - 2])
            .all(|l| l == "audio"),
        "{la:?}"
    );
    let lb = labels(&seen, "B", b);
    assert_eq!(lb.first().map(String::as_str), Some("context.created"));
    assert_eq!(lb.last().map(String::as_str), Some("context.done"));
    assert!(!lb.contains(&"flushed".to_string()), "{lb:?}");
    check_contiguous(&seen, a);
    check_contiguous(&seen, b);

    // The client leaving ends the session and frees everything.
    peer.text("C", "Left hanging when the client goes away")
        .await;
    drop(peer.tx);
    tokio::time::timeout(READ_TIMEOUT, peer.task)
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.engine.slots_used() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(service.engine.slots_used(), 0);
    let m = service.state.metrics();
    assert_eq!(m.ws_sessions_active.get(), 0);
    assert_eq!(m.contexts_active.get(), 0);
    assert_eq!(m.contexts_total.with_label_values(&["done"]).get(), 2);
}

/// A flood of flushes while a flushed segment drains (held back as one counted entry) is
/// answered flush by flush: one `flushed` each, in order, after the segment's last frame and
/// before the next segment's first, and the context goes on to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_flushes_is_answered_one_by_one_and_the_context_goes_on() {
    const FLUSHES: usize = 2_000;
    let service = Service::load(|_| {});
    let mut peer = service.session(service.defaults(), 64);
    assert!(matches!(peer.next().await, Seen::Event(ev) if ev["type"] == "session.ready"));
    // Sent from another task: the session stops reading while its audio waits to be read.
    let mut tx = peer.tx.clone();
    let flood = tokio::spawn(async move {
        let text = |t: &str| json!({"type": "text", "context_id": "A", "text": t});
        let flush = json!({"type": "flush", "context_id": "A"});
        let close = json!({"type": "close", "context_id": "A"});
        let messages = std::iter::once(text("Hello there my good friend."))
            .chain(std::iter::repeat_n(flush, FLUSHES))
            .chain([text("And then a little more."), close]);
        for message in messages {
            tx.send(Incoming::Text(message.to_string())).await.unwrap();
        }
    });
    let seen = peer.until_count("context.done", 1).await;
    flood.await.unwrap();
    let a = context_num(&seen, "A");
    let la = labels(&seen, "A", a);
    let first = la.iter().position(|l| l == "flushed").expect("flushed");
    assert_eq!(la[first - 1], "audio+last", "{:?}", &la[..first]);
    assert!(la[first..first + FLUSHES].iter().all(|l| l == "flushed"));
    assert_eq!(la[first + FLUSHES], "audio+first");
    assert_eq!(la.iter().filter(|l| *l == "flushed").count(), FLUSHES);
    assert_eq!(la.last().map(String::as_str), Some("context.done"));
    check_contiguous(&seen, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_gets_a_warning_then_slow_consumer() {
    // A fixed seed for which the tiny model speaks this text for ~145 frames: with a random
    // one its end-of-speech classifier may end the utterance within the buffered frames,
    // before the server gives up on the client.
    let service = Service::load(|s| {
        s.limits.max_buffered_frames = 2;
        s.seed = Some(3);
    });
    // Room for two messages (session.ready, context.created): the session then blocks on
    // its first audio frame until we read, and the engine's outbox fills up.
    let mut peer = service.session(service.defaults(), 2);
    peer.text(
        "slow",
        "Nobody reads this audio, so the server gives up on it.",
    )
    .await;
    peer.send(json!({"type": "close", "context_id": "slow"}))
        .await;
    // Read nothing until the engine has given the utterance up (or, were the machine fast
    // enough for it to end first, finished it): a fixed sleep is flaky on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while service.engine.slots_used() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    loop {
        let s = peer.next().await;
        let stop =
            matches!(&s, Seen::Event(ev) if ev["type"] == "error" || ev["type"] == "context.done");
        seen.push(s);
        if stop {
            break;
        }
    }
    let events: Vec<&Value> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Event(ev) => Some(ev),
            _ => None,
        })
        .collect();
    let warning = events
        .iter()
        .find(|e| e["type"] == "warning")
        .expect("a warning first");
    assert_eq!(
        (warning["code"].as_str(), warning["context_id"].as_str()),
        (Some("slow_consumer"), Some("slow"))
    );
    let err = events.last().unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(
        (err["code"].as_str(), err["context_id"].as_str()),
        (Some("slow_consumer"), Some("slow"))
    );
    assert_eq!(err["fatal"], false);
    let frames = seen.iter().filter(|s| matches!(s, Seen::Frame(..))).count();
    // The frame the session was blocked on, then the engine's buffer of 2.
    assert!(
        frames <= 3,
        "at most the buffered frames were delivered: {frames}"
    );
    assert_eq!(
        service
            .state
            .metrics()
            .contexts_total
            .with_label_values(&["failed"])
            .get(),
        1
    );
    // The session goes on.
    peer.send(json!({"type": "keepalive"})).await;
    peer.send(json!({"type": "flush", "context_id": "slow"}))
        .await;
    assert!(matches!(peer.next().await, Seen::Event(ev) if ev["code"] == "unknown_context"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_inputs_send_an_error_then_the_close_code() {
    let service = Service::load(|s| s.limits.max_message_bytes = 300);
    let cases = [
        (Incoming::Binary { len: 3 }, "protocol_violation", 4400),
        (
            Incoming::Failed(TransportFailure::InvalidUtf8),
            "invalid_utf8",
            1007,
        ),
        (
            Incoming::Failed(TransportFailure::TooBig),
            "message_too_big",
            1009,
        ),
        (
            Incoming::Failed(TransportFailure::Protocol),
            "protocol_violation",
            4400,
        ),
        (Incoming::Text("x".repeat(301)), "message_too_big", 1009),
    ];
    for (input, code, close) in cases {
        let mut peer = service.session(service.defaults(), 64);
        peer.tx.send(input.clone()).await.unwrap();
        let (events, got) = peer.closing().await;
        assert_eq!(got, close, "{input:?}");
        let last = events.last().unwrap();
        assert_eq!(
            (last["code"].as_str(), last["fatal"].as_bool()),
            (Some(code), Some(true)),
            "{input:?}"
        );
        drop(peer.tx);
        tokio::time::timeout(READ_TIMEOUT, peer.task)
            .await
            .unwrap()
            .unwrap();
    }
    // A message of exactly the limit is parsed (and here rejected as invalid JSON only).
    let mut peer = service.session(service.defaults(), 64);
    peer.tx.send(Incoming::Text("x".repeat(300))).await.unwrap();
    let ev = peer.until_count("error", 1).await;
    assert!(
        matches!(ev.last(), Some(Seen::Event(e)) if e["code"] == "invalid_json" && e["fatal"] == false)
    );
}

/// Reads until an event matching `wanted` arrives; returns it.
async fn event_where(peer: &mut Peer, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        if let Seen::Event(ev) = peer.next().await {
            if wanted(&ev) {
                return ev;
            }
        }
    }
}

/// The next event about context `id` of type `kind`.
async fn event_of(peer: &mut Peer, kind: &str, id: &str) -> Value {
    event_where(peer, |ev| ev["type"] == kind && ev["context_id"] == id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_and_slots_per_session_are_capped_without_ending_the_session() {
    // 4 slots in all: one session may hold 2 of them (50 %) and have 3 contexts.
    let service = Service::load(|s| s.limits.max_contexts_per_session = 3);
    let mut peer = service.session(service.defaults(), 256);
    event_where(&mut peer, |ev| ev["type"] == "session.ready").await;
    assert_eq!(service.engine.slots_total(), 4);
    peer.text("A", "Hello there").await;
    event_of(&mut peer, "context.created", "A").await;
    peer.text("B", "Hello there").await;
    event_of(&mut peer, "context.created", "B").await;
    // A third segment would exceed the session's share of the slots.
    peer.text("C", "Hello there").await;
    let refused = event_of(&mut peer, "error", "C").await;
    assert_eq!(
        (refused["code"].as_str(), refused["fatal"].as_bool()),
        (Some("session_slot_share"), Some(false))
    );
    assert_eq!(service.engine.slots_used(), 2);
    // Another session is not starved.
    let mut other = service.session(service.defaults(), 256);
    other.text("X", "Someone else").await;
    event_of(&mut other, "context.created", "X").await;
    other
        .send(json!({"type": "cancel", "context_id": "*"}))
        .await;
    // A's flushed segment ends: its slot is free again, and C may open.
    peer.send(json!({"type": "flush", "context_id": "A"})).await;
    event_of(&mut peer, "flushed", "A").await;
    peer.text("C", "Hello there").await;
    event_of(&mut peer, "context.created", "C").await;
    // A, B and C are open: a fourth context is one too many.
    peer.text("D", "Hello there").await;
    let refused = event_of(&mut peer, "error", "D").await;
    assert_eq!(
        (refused["code"].as_str(), refused["fatal"].as_bool()),
        (Some("too_many_contexts"), Some(false))
    );
    // New text for A would start a third segment: refused, A stays open.
    peer.text("A", " again").await;
    let refused = event_of(&mut peer, "error", "A").await;
    assert_eq!(refused["code"], "session_slot_share");
    // The session goes on: cancelling frees everything, and a new context opens.
    peer.send(json!({"type": "cancel", "context_id": "*"}))
        .await;
    peer.text("E", "Back to normal.").await;
    event_of(&mut peer, "context.created", "E").await;
    peer.send(json!({"type": "close", "context_id": "E"})).await;
    event_of(&mut peer, "context.done", "E").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_kept_alive_by_single_characters_is_closed_after_the_idle_timeout() {
    let service = Service::load(|s| s.limits.context_idle_timeout_secs = 1);
    let mut peer = service.session(service.defaults(), 256);
    event_where(&mut peer, |ev| ev["type"] == "session.ready").await;
    peer.text("T", "x").await;
    event_of(&mut peer, "context.created", "T").await;
    // One character every 200 ms for 6 s: never a complete word, never any audio.
    let mut tx = peer.tx.clone();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let message = json!({"type": "text", "context_id": "T", "text": "x"});
            if tx.send(Incoming::Text(message.to_string())).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let warning = event_of(&mut peer, "warning", "T").await;
    let waited = started.elapsed();
    assert_eq!(warning["code"], "context_idle_timeout");
    // Closed after about 1 s, while the trickle still ran (it lasts 6 s).
    assert!(
        waited < Duration::from_secs(4),
        "closed only after {waited:?}"
    );
    event_of(&mut peer, "context.done", "T").await;
    trickle.abort();
}

/// One engine for every property case.
fn shared_service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| Service::load(|s| s.limits.max_frames_per_token = 2))
}

const PROPERTY_TEXT: &str = "Streaming text, in pieces: any cut gives the same speech.";

/// Speaks `pieces` (then close) in a fresh session with a fixed seed; returns the payload bytes.
async fn speak_pieces(pieces: &[String]) -> Vec<u8> {
    let service = shared_service();
    let mut config = service.defaults();
    config.seed = Some(11);
    let mut peer = service.session(config, 256);
    for piece in pieces {
        peer.text("p", piece).await;
    }
    peer.send(json!({"type": "close", "context_id": "p"})).await;
    let seen = peer.until_count("context.done", 1).await;
    seen.into_iter()
        .flat_map(|s| match s {
            Seen::Frame(_, p) => p,
            _ => Vec::new(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    /// Cutting the text anywhere (inside words, around spaces and punctuation) gives exactly
    /// the audio bytes of the whole text.
    #[test]
    fn any_chunking_gives_the_audio_of_the_whole_text(
        cuts in prop::collection::btree_set(1usize..PROPERTY_TEXT.len(), 0..12)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        static WHOLE: OnceLock<Vec<u8>> = OnceLock::new();
        let whole = WHOLE.get_or_init(|| runtime.block_on(speak_pieces(&[PROPERTY_TEXT.to_string()])));
        let mut pieces = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&PROPERTY_TEXT.len())) {
            pieces.push(PROPERTY_TEXT[start..cut].to_string());
            start = cut;
        }
        let streamed = runtime.block_on(speak_pieces(&pieces));
        prop_assert!(!whole.is_empty());
        prop_assert_eq!(streamed.len(), whole.len());
        prop_assert!(&streamed == whole, "pieces {:?} changed the audio", pieces);
    }
}

/// Words queued before the session reads them (the channel holds 16 messages, so they arrive
/// in batches, their text merged into one push per batch) give the audio of the whole text,
/// and a flush among them still splits the text where it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_that_arrive_together_give_the_audio_of_the_whole_text() {
    let words: Vec<String> = PROPERTY_TEXT
        .split_inclusive(' ')
        .map(str::to_string)
        .collect();
    assert!(words.len() > 8);
    let whole = speak_pieces(&[PROPERTY_TEXT.to_string()]).await;
    assert_eq!(speak_pieces(&words).await, whole);
    // A flush after the fourth word: the same audio as the two halves sent with a flush one
    // message at a time (the session waits for each `flushed` in the reference).
    let (service, words) = (shared_service(), &words);
    let speak = |wait: bool| async move {
        let mut config = service.defaults();
        config.seed = Some(11);
        let mut peer = service.session(config, 256);
        let (head, tail) = words.split_at(4);
        for word in head {
            peer.text("p", word).await;
        }
        peer.send(json!({"type": "flush", "context_id": "p"})).await;
        let mut seen = match wait {
            true => peer.until_count("flushed", 1).await,
            false => Vec::new(),
        };
        for word in tail {
            peer.text("p", word).await;
        }
        peer.send(json!({"type": "close", "context_id": "p"})).await;
        seen.extend(peer.until_count("context.done", 1).await);
        let labels = labels(&seen, "p", context_num(&seen, "p"));
        let audio: Vec<u8> = (seen.into_iter())
            .flat_map(|s| match s {
                Seen::Frame(_, p) => p,
                _ => Vec::new(),
            })
            .collect();
        (audio, labels)
    };
    let (queued, labels) = speak(false).await;
    let (stepwise, _) = speak(true).await;
    assert_eq!(queued, stepwise);
    assert_ne!(queued, whole, "the flush splits the text");
    assert!(labels.iter().any(|l| l == "flushed"), "{labels:?}");
}

/// One client operation of the state-machine property.
#[derive(Debug, Clone)]
enum Op {
    Text(usize, String, bool),
    Flush(usize),
    Close(usize),
    Cancel(Option<usize>),
    Configure(u64),
    Junk(String),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0usize..3;
    prop_oneof![
        4 => (id.clone(), "[a-z ,.]{0,24}", any::<bool>()).prop_map(|(i, t, f)| Op::Text(i, t, f)),
        1 => id.clone().prop_map(Op::Flush),
        2 => id.clone().prop_map(Op::Close),
        1 => prop::option::of(id).prop_map(Op::Cancel),
        1 => any::<u64>().prop_map(Op::Configure),
        1 => ".{0,16}".prop_map(Op::Junk),
    ]
}

/// Error codes that end the context they name (docs/protocol.md).
const ENDING: &[&str] = &[
    "slow_consumer",
    "synthesis_failed",
    "synthesis_cancelled",
    "encoding_failed",
    "text_wait_timeout",
];

/// Runs `ops` on a fresh session of `service`, then cancels everything; checks that every
/// context created ends exactly once, that the engine's slots return to zero, and that the
/// session task ends without a panic when the client goes.
async fn run_ops(service: &Service, ops: &[Op]) -> Result<(), TestCaseError> {
    let ids = ["a", "b", "c"];
    let mut peer = service.session(service.defaults(), 1 << 16);
    for op in ops {
        let message = match op {
            Op::Text(i, text, flush) => {
                json!({"type": "text", "context_id": ids[*i], "text": text, "flush": flush})
            }
            Op::Flush(i) => json!({"type": "flush", "context_id": ids[*i]}),
            Op::Close(i) => json!({"type": "close", "context_id": ids[*i]}),
            Op::Cancel(i) => json!({"type": "cancel", "context_id": i.map_or("*", |i| ids[i])}),
            Op::Configure(seed) => json!({"type": "session.configure", "seed": seed}),
            Op::Junk(s) => {
                peer.tx.send(Incoming::Text(s.clone())).await.unwrap();
                continue;
            }
        };
        peer.send(message).await;
    }
    peer.send(json!({"type": "cancel", "context_id": "*"}))
        .await;
    // A marker: once its answer arrives, every earlier operation has been handled.
    peer.send(json!({"type": "session.configure"})).await;
    let mut live = std::collections::HashMap::<String, bool>::new();
    let mut configured = 0;
    let wanted = 1 + ops.iter().filter(|o| matches!(o, Op::Configure(_))).count();
    while configured < wanted || live.values().any(|l| *l) {
        let Seen::Event(ev) = peer.next().await else {
            continue;
        };
        let id = ev["context_id"].as_str().unwrap_or_default().to_string();
        let kind = ev["type"].as_str().unwrap_or_default();
        let ends = matches!(kind, "context.done" | "cancelled")
            || (kind == "error" && ENDING.contains(&ev["code"].as_str().unwrap_or_default()));
        if kind == "session.configured" {
            configured += 1;
        } else if kind == "context.created" {
            prop_assert!(
                !live.get(&id).copied().unwrap_or(false),
                "{id} created twice: {ev}"
            );
            live.insert(id, true);
        } else if ends {
            prop_assert!(
                live.get(&id).copied().unwrap_or(false),
                "{id} ended while not live: {ev}"
            );
            live.insert(id, false);
        }
        prop_assert!(ev["fatal"] != json!(true), "fatal error: {ev}");
    }
    let until = Instant::now() + Duration::from_secs(10);
    while service.engine.slots_used() != 0 {
        prop_assert!(
            Instant::now() < until,
            "slots still used: {}",
            service.engine.slots_used()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(peer.tx);
    prop_assert!(peer.task.await.is_ok(), "the session task panicked");
    Ok(())
}

/// Cases of the session state-machine property: 2,000 in `cargo test` (about 16 s), 8,000 more
/// (other random seeds) in `.ci/run`, so 10,000 in all (`VV_SESSION_FUZZ_CASES`).
fn session_cases() -> u32 {
    std::env::var("VV_SESSION_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(session_cases()))]
    /// The session state machine under random operation sequences: no panic, no fatal error,
    /// every context created ends exactly once, and slots in use return to zero (slots in use =
    /// live segments).
    #[test]
    fn random_operation_sequences_keep_the_session_consistent(
        ops in prop::collection::vec(op(), 0..24)
    ) {
        static SERVICE: OnceLock<Service> = OnceLock::new();
        let service = SERVICE.get_or_init(|| Service::load(|s| s.limits.max_frames_per_token = 2));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(run_ops(service, &ops))?;
    }
}
