//! The engine on the tiny fixture model: streaming text, events in order, cancellation,
//! fail-fast overload, and freed slots after a client disappears.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use vv_device::probe::SystemProbe;
use vv_device::{DTypeRequest, DeviceRequest};
use vv_engine::{
    load_engine, EngineHandle, EngineOptions, NoopObserver, SlotPolicy, SynthesisParams,
    UtteranceEvent,
};
use vv_model::scheduler::SolverKind;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata")).join(rel)
}

fn engine(slots: usize) -> EngineHandle {
    // One directory per engine: tests run in parallel and must not read a half-copied preset.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let voices = std::env::temp_dir().join(format!(
        "vv-engine-voices-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&voices).unwrap();
    std::fs::copy(
        testdata("vibevoice-tiny/golden/voice_preset.pt"),
        voices.join("tiny.pt"),
    )
    .unwrap();
    let opts = EngineOptions {
        model: testdata("vibevoice-tiny/model").display().to_string(),
        random_weights: false,
        model_revision: None,
        tokenizer: testdata("vibevoice-tiny/tokenizer/tokenizer.json")
            .display()
            .to_string(),
        cache_dir: None,
        voices_dir: Some(voices),
        default_voice: None,
        device: DeviceRequest::Cpu,
        dtype: DTypeRequest::Auto,
        slots: SlotPolicy::Fixed { slots },
        max_buffered_frames: 64,
        max_frames_per_token: 3,
        warmup: true,
        cuda_graphs: true,
        cuda_graph_warmup: true,
        diffusion_steps: 5,
        cfg_scale: 1.5,
        solver: SolverKind::Ode,
        progress: false,
    };
    load_engine(&opts, &SystemProbe::new(), Arc::new(NoopObserver)).unwrap()
}

fn params(seed: u64) -> SynthesisParams {
    SynthesisParams {
        voice: None,
        cfg_scale: 1.5,
        diffusion_steps: 5,
        solver: SolverKind::Ode,
        seed: Some(seed),
    }
}

/// Collects audio until the terminal event; returns samples and the terminal event.
fn collect(utt: &mut vv_engine::UtteranceHandle) -> (Vec<f32>, UtteranceEvent) {
    let mut audio = Vec::new();
    let mut seq = 0;
    loop {
        let ev = block_on(utt.next_event()).expect("terminal event");
        match ev {
            UtteranceEvent::Audio { seq: s, samples } => {
                assert_eq!(s, seq, "frames arrive in order");
                seq += 1;
                audio.extend_from_slice(&samples);
            }
            UtteranceEvent::Warning { .. } => {}
            terminal => return (audio, terminal),
        }
    }
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
    let utt = engine.start(params(1)).unwrap();
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
