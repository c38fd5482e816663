//! What the engine tests share: options for the tiny fixture model, parameters, and reading
//! an utterance to its end.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::executor::block_on;
use vv_device::{DTypeRequest, DeviceRequest};
use vv_engine::{EngineOptions, SlotPolicy, SynthesisParams, UtteranceEvent};
use vv_model::scheduler::SolverKind;
use vv_model::Quantize;

pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata")).join(rel)
}

/// Options for the tiny fixture model with its voice copied to a fresh directory.
pub fn options(policy: SlotPolicy) -> EngineOptions {
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
    EngineOptions {
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
        // f32 weights: the tests compare utterances with each other at f32 precision.
        quantize: Quantize::None,
        slots: policy,
        max_buffered_frames: 64,
        max_frames_per_token: 3,
        warmup: true,
        cuda_graphs: true,
        cuda_graph_warmup: true,
        diffusion_steps: 5,
        cfg_scale: 1.5,
        solver: SolverKind::Ode,
        progress: false,
        stall_timeout: Duration::from_secs(30),
        text_wait_timeout: Duration::from_secs(30),
        commands_per_round: 256,
    }
}

pub fn params(seed: u64) -> SynthesisParams {
    SynthesisParams {
        voice: None,
        cfg_scale: 1.5,
        diffusion_steps: 5,
        solver: SolverKind::Ode,
        seed: Some(seed),
    }
}

/// Collects audio until the terminal event; returns samples and the terminal event.
pub fn collect(utt: &mut vv_engine::UtteranceHandle) -> (Vec<f32>, UtteranceEvent) {
    let mut audio = Vec::new();
    let mut seq = 0;
    loop {
        let ev = block_on(utt.next_event()).expect("terminal event");
        match ev {
            UtteranceEvent::Audio {
                seq: s, samples, ..
            } => {
                assert_eq!(s, seq, "frames arrive in order");
                seq += 1;
                audio.extend_from_slice(&samples);
            }
            UtteranceEvent::Warning { .. } => {}
            terminal => return (audio, terminal),
        }
    }
}
