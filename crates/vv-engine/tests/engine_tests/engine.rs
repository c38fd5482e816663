//! The engine on the tiny fixture model: streaming text, events in order, cancellation,
//! fail-fast overload, and freed slots after a client disappears.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use vv_device::probe::SystemProbe;
use vv_engine::{load_engine, EngineHandle, NoopObserver, SlotPolicy, UtteranceEvent};

use crate::support::{collect, options, params};

fn engine(slots: usize) -> EngineHandle {
    engine_with(SlotPolicy::Fixed { slots })
}

fn engine_with(policy: SlotPolicy) -> EngineHandle {
    load_engine(
        &options(policy),
        &SystemProbe::new(),
        Arc::new(NoopObserver),
    )
    .unwrap()
}

#[test]
fn streamed_text_gives_the_same_audio_as_one_message() {
    let engine = engine(2);
    assert_eq!(engine.info().voices, vec!["tiny".to_string()]);
    let text = "Hello there, this is a streaming test of the tiny voice.";
    let mut whole = engine.start(params(5)).unwrap();
    whole.push_text(text).unwrap();
    whole.close().unwrap();
    let (a, end_a) = collect(&mut whole);
    let mut pieces = engine.start(params(5)).unwrap();
    for chunk in [
        "Hel",
        "lo there, th",
        "is is a strea",
        "ming test of the ti",
        "ny voice.",
    ] {
        pieces.push_text(chunk).unwrap();
    }
    pieces.close().unwrap();
    let (b, end_b) = collect(&mut pieces);
    assert!(!a.is_empty() && a.len() % 3200 == 0, "{}", a.len());
    assert!(
        matches!(end_a, UtteranceEvent::Finished { .. }),
        "{end_a:?}"
    );
    assert!(
        matches!(end_b, UtteranceEvent::Finished { .. }),
        "{end_b:?}"
    );
    assert_eq!(a, b);
}

/// A text longer than one tokenizer piece (its tail is tokenized off the caller's thread, with
/// more text and the close queued behind it) gives the audio of the same text sent word by
/// word, which is tokenized on the caller's thread.
#[test]
fn a_long_text_tokenized_off_the_callers_thread_gives_the_audio_of_its_words() {
    let engine = engine(2);
    let sentence = "Long texts start speaking before the tokenizer is done with them. ";
    let text = sentence.repeat(6);
    assert!(text.len() > 256);
    let mut whole = engine.start(params(9)).unwrap();
    whole.push_text(&text).unwrap();
    whole.push_text("And one more.").unwrap();
    whole.close().unwrap();
    let (a, end_a) = collect(&mut whole);
    let mut words = engine.start(params(9)).unwrap();
    for word in text.split_inclusive(' ').chain(["And ", "one ", "more."]) {
        words.push_text(word).unwrap();
    }
    words.close().unwrap();
    let (b, end_b) = collect(&mut words);
    assert!(
        matches!(end_a, UtteranceEvent::Finished { .. }),
        "{end_a:?}"
    );
    assert!(
        matches!(end_b, UtteranceEvent::Finished { .. }),
        "{end_b:?}"
    );
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn overload_fails_fast_and_cancel_frees_the_slot() {
    let engine = engine(1);
    let mut first = engine.start(params(1)).unwrap();
    first
        .push_text("A sentence that keeps the only slot busy for a while.")
        .unwrap();
    let err = engine
        .start(params(2))
        .err()
        .expect("second utterance must be refused");
    assert_eq!(err.code(), "overloaded");
    first.cancel();
    let (_, end) = collect(&mut first);
    assert!(matches!(end, UtteranceEvent::Cancelled { .. }), "{end:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.slots_used() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(engine.slots_used(), 0);
    assert!(engine.start(params(3)).is_ok());
}

#[test]
fn dropping_the_handle_frees_the_slot() {
    let engine = engine(1);
    let mut utt = engine.start(params(1)).unwrap();
    utt.push_text("Some text that would take a while to speak out loud.")
        .unwrap();
    utt.close().unwrap();
    drop(utt);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.slots_used() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(engine.slots_used(), 0);
}

#[test]
fn unknown_voice_is_refused_before_taking_a_slot() {
    let engine = engine(1);
    let mut p = params(1);
    p.voice = Some("../etc/passwd".into());
    assert_eq!(engine.start(p).err().unwrap().code(), "unknown_voice");
    assert_eq!(engine.slots_used(), 0);
}

/// Relative difference of two audio streams (max |a - b| / max |b|).
fn rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "different lengths");
    let peak = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    worst / peak.max(f32::MIN_POSITIVE)
}

#[test]
fn concurrent_utterances_get_the_audio_they_get_alone() {
    let engine = engine(8);
    let texts = [
        (
            11,
            "The first voice reads a long and winding sentence about the sea.",
        ),
        (12, "A second, shorter one."),
        (13, "Third: numbers one two three four five six seven."),
        (
            14,
            "The fourth sentence is cancelled after two frames of audio.",
        ),
    ];
    let alone = |seed: u64, text: &str| {
        let mut u = engine.start(params(seed)).unwrap();
        u.push_text(text).unwrap();
        u.close().unwrap();
        collect(&mut u).0
    };
    // All at once (batched rounds), one of them waiting for its text and one cancelled.
    let mut late = engine.start(params(15)).unwrap();
    late.push_text("Waiting for the rest").unwrap();
    let mut handles: Vec<_> = texts
        .iter()
        .map(|(seed, text)| {
            let mut u = engine.start(params(*seed)).unwrap();
            u.push_text(text).unwrap();
            u.close().unwrap();
            u
        })
        .collect();
    let mut cancelled = handles.pop().unwrap();
    let mut first_two = Vec::new();
    while first_two.len() < 2 * 3200 {
        if let Some(UtteranceEvent::Audio { samples, .. }) = block_on(cancelled.next_event()) {
            first_two.extend_from_slice(&samples);
        }
    }
    cancelled.cancel();
    // Read concurrently: an utterance whose frames sit unread is cut off as a slow consumer.
    let readers: Vec<_> = handles
        .into_iter()
        .map(|mut u| std::thread::spawn(move || collect(&mut u).0))
        .collect();
    let together: Vec<Vec<f32>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    late.push_text(" of its words, which come late.").unwrap();
    late.close().unwrap();
    let late_audio = collect(&mut late).0;
    // Alone, one after another: on the CPU every sample is the same (the kernels compute each
    // utterance's values the same way whatever shares the round), far inside the 1e-4 bound.
    for ((seed, text), got) in texts.iter().zip(&together) {
        let r = rel(got, &alone(*seed, text));
        assert_eq!(r, 0.0, "seed {seed}: relative difference {r:.3e}");
    }
    let lone = alone(14, texts[3].1);
    assert_eq!(rel(&first_two, &lone[..first_two.len()]), 0.0);
    let r = rel(
        &late_audio,
        &alone(15, "Waiting for the rest of its words, which come late."),
    );
    assert_eq!(r, 0.0, "late text: relative difference {r:.3e}");
}

#[test]
fn automatic_slots_admit_what_the_measured_capacity_allows() {
    // The tiny model runs far faster than real time: the limit decides.
    let engine = engine_with(SlotPolicy::Auto {
        headroom: 0.7,
        limit: 3,
    });
    assert_eq!(engine.slots_total(), 3);
    let report = engine.capacity();
    assert_eq!(report.mode, "auto");
    let measured: Vec<usize> = report.round_ms_by_batch.keys().copied().collect();
    assert_eq!(measured, [1, 2, 4], "calibrated buckets up to the limit's");
    let held: Vec<_> = (1..=3)
        .map(|seed| engine.start(params(seed)).unwrap())
        .collect();
    assert_eq!(engine.start(params(4)).err().unwrap().code(), "overloaded");
    assert_eq!((engine.admitted(), engine.refused()), (3, 1));
    drop(held);

    // A budget no round can meet still admits one utterance at a time.
    let engine = engine_with(SlotPolicy::Auto {
        headroom: 1e-6,
        limit: 256,
    });
    assert_eq!(engine.slots_total(), 1);
    let _one = engine.start(params(1)).unwrap();
    assert_eq!(engine.start(params(2)).err().unwrap().code(), "overloaded");
}

#[test]
fn frames_report_the_text_tokens_read_window_by_window() {
    let engine = engine(1);
    let text = "Hello there, this is a streaming test of the tiny voice, with several windows.";
    let tokens = engine.count_tokens(text).unwrap();
    assert!(tokens > 10, "{tokens}");
    let mut utt = engine.start(params(7)).unwrap();
    utt.push_text(text).unwrap();
    utt.close().unwrap();
    let mut read = Vec::new();
    loop {
        match block_on(utt.next_event()).expect("terminal event") {
            UtteranceEvent::Audio { text_tokens, .. } => read.push(text_tokens as usize),
            UtteranceEvent::Warning { .. } => {}
            _ => break,
        }
    }
    assert!(!read.is_empty());
    // A first window of 5 tokens, then growth by at most 5 tokens per 6 frames, never back;
    // never more than the text's tokens (plus the closing newline).
    assert_eq!(read[0], 5);
    assert!(read.windows(2).all(|w| w[0] <= w[1] && w[1] - w[0] <= 5));
    for (i, w) in read.windows(2).enumerate() {
        if w[0] != w[1] {
            assert_eq!((i + 1) % 6, 0, "a window starts every 6 frames: {read:?}");
        }
    }
    assert!(*read.last().unwrap() <= tokens + 1);
}
