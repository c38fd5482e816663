//! First audio first (`first_audio_hold_ms`): while a context's first audio is made from text
//! the engine already has, later client messages wait unread, at most for the hold; a context
//! whose text does not fill its first window yet holds nothing. The model thread's first step
//! is slowed through the engine's fault seam, so the order of events shows what was read when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Histogram;
use vv_device::DeviceRequest;
use vv_engine::Faults;
use vv_server::config::FirstAudioHold;

use crate::common::TestServer;
use crate::ws_client::{self, Received};

/// More than a text window of tokens, sent without `close`.
const LONG: &str = "The first context says a whole sentence, well over one window of tokens. ";
/// Longest wait for the three events when they all come.
const LONG_WAIT: Duration = Duration::from_secs(30);

/// Slows the first step after it is armed by `delay`.
struct SlowFirstStep {
    armed: AtomicBool,
    delay: Duration,
}

impl Faults for SlowFirstStep {
    fn step(&self) -> vv_model::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            std::thread::sleep(self.delay);
        }
        Ok(())
    }
}

/// What context `a` is sent before context `b`'s text.
struct ContextA<'a> {
    /// Its first text; `context.created` is awaited after it.
    first: &'a str,
    /// Text sent `LATE_AFTER` later (then `b` waits `SETTLE` more), if any.
    late: Option<&'a str>,
}

/// The pause before `a`'s late text.
const LATE_AFTER: Duration = Duration::from_millis(300);
/// The pause between `a`'s late text and `b`'s, so the session reads them apart.
const SETTLE: Duration = Duration::from_millis(50);

/// On a ready server with a hold of `hold_ms` and a session idle timeout of
/// `session_idle_secs`, whose first step after warm-up takes `delay`
/// more: sends context `a`'s text, then text to context `b`, then reads until `b` was created
/// and `a` had audio (or `wait` passed). Returns the order of `created:a`, `audio:a` and
/// `created:b`, each with its time after `b`'s text was sent (`created:a` at zero), and the
/// server's `first_audio_hold_seconds`.
async fn timeline(
    hold_ms: u64,
    session_idle_secs: u64,
    delay: Duration,
    a: ContextA<'_>,
    wait: Duration,
) -> (Vec<(String, Duration)>, Histogram) {
    let faults = Arc::new(SlowFirstStep {
        armed: AtomicBool::new(false),
        delay,
    });
    let seam: Arc<dyn Faults> = faults.clone();
    let server = TestServer::start_with_faults(
        DeviceRequest::Cpu,
        |s| {
            s.limits.first_audio_hold_ms = FirstAudioHold::Millis(hold_ms);
            s.limits.session_idle_timeout_secs = session_idle_secs;
        },
        seam,
    )
    .await;
    server.wait_ready().await;
    faults.armed.store(!delay.is_zero(), Ordering::SeqCst);
    let mut client = ws_client::connect(server.addr, "").await;

    client.text("a", a.first).await;
    client.until("context.created", Some("a")).await;
    if let Some(late) = a.late {
        tokio::time::sleep(LATE_AFTER).await;
        client.text("a", late).await;
        tokio::time::sleep(SETTLE).await;
    }
    let mut seen = vec![("created:a".to_string(), Duration::ZERO)];
    client.text("b", "The second context.").await;
    let b_sent = Instant::now();
    while seen.len() < 3 {
        let left = (b_sent + wait).saturating_duration_since(Instant::now());
        let label = match client.next_within(left).await {
            None => break,
            Some(Received::Event(ev)) if ev["type"] == "context.created" => {
                format!("created:{}", ev["context_id"].as_str().unwrap())
            }
            Some(Received::Frame(h, _)) if Some(&h.context_num) == client.nums.get("a") => {
                "audio:a".to_string()
            }
            Some(Received::Closed(code)) => panic!("session closed ({code:?})"),
            Some(_) => continue,
        };
        if !seen.iter().any(|(l, _)| *l == label) {
            seen.push((label, b_sent.elapsed()));
        }
    }
    let held = server.state.metrics().first_audio_hold_seconds.clone();
    (seen, held)
}

/// The session idle timeout of most tests (the default).
const IDLE: u64 = 60;

/// A context whose first text fills its first window.
const LONG_A: ContextA = ContextA {
    first: LONG,
    late: None,
};

fn labels(seen: &[(String, Duration)]) -> Vec<&str> {
    seen.iter().map(|(l, _)| l.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_messages_wait_for_the_first_audio() {
    let (seen, held) = timeline(1000, IDLE, Duration::from_millis(300), LONG_A, LONG_WAIT).await;
    assert_eq!(
        labels(&seen),
        ["created:a", "audio:a", "created:b"],
        "{seen:?}"
    );
    // The hold is observed once it ended (`b`'s own, if it ended already, is another): it
    // lasted the slowed first step at least.
    assert!(held.get_sample_count() >= 1);
    assert!(held.get_sample_sum() >= 0.2, "{}", held.get_sample_sum());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hold_later_messages_are_read_at_once() {
    let (seen, held) = timeline(0, IDLE, Duration::from_millis(300), LONG_A, LONG_WAIT).await;
    assert_eq!(
        labels(&seen),
        ["created:a", "created:b", "audio:a"],
        "{seen:?}"
    );
    assert_eq!(held.get_sample_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_ends_at_its_bound() {
    let (seen, _) = timeline(100, IDLE, Duration::from_millis(1500), LONG_A, LONG_WAIT).await;
    assert_eq!(
        labels(&seen),
        ["created:a", "created:b", "audio:a"],
        "{seen:?}"
    );
    // Counted from when `a`'s window was complete, just before `a` was created.
    assert!(seen[1].1 >= Duration::from_millis(50), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_window_still_short_of_text_holds_nothing() {
    // One word, input open: the first window waits for more text, so reading must go on.
    let hello = ContextA {
        first: "Hello",
        late: None,
    };
    let (seen, _) = timeline(
        1000,
        IDLE,
        Duration::ZERO,
        hello,
        Duration::from_millis(900),
    )
    .await;
    assert_eq!(labels(&seen), ["created:a", "created:b"], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_counts_from_the_completed_window_not_the_first_text() {
    // `a`'s window is complete only with its late text, after more than the hold (200 ms)
    // since its first: the hold still runs, from then.
    let trickled = ContextA {
        first: "Hello",
        late: Some(LONG),
    };
    let (seen, held) = timeline(200, IDLE, Duration::from_millis(1500), trickled, LONG_WAIT).await;
    assert_eq!(
        labels(&seen),
        ["created:a", "created:b", "audio:a"],
        "{seen:?}"
    );
    assert!(seen[1].1 >= Duration::from_millis(100), "{seen:?}");
    assert!(held.get_sample_count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_waits_for_the_holds_end() {
    // A hold as long as the session idle timeout, with `b`'s text unread through it: the session
    // must read it after the hold, not end as idle (the helper panics if the session closes).
    let (seen, _) = timeline(1000, 1, Duration::from_millis(1500), LONG_A, LONG_WAIT).await;
    assert_eq!(
        labels(&seen),
        ["created:a", "created:b", "audio:a"],
        "{seen:?}"
    );
}
