//! Batched rounds equal stepping alone: utterances of different voices (prompts of different
//! lengths, so caches at different positions), texts, seeds, guidance, step counts, solvers and
//! lengths, starting in different rounds, one cancelled midway and one waiting for text, are
//! advanced together by `step_round` and one by one; every frame must agree.
//!
//! Tolerance: per utterance, max |batched − alone| over all its samples at most 1e-4 of the
//! largest |alone| sample (CPU, f32). Batching changes only the row counts of the matmuls (the
//! fused skinny kernel for up to 16 rows, candle's GEMM above), hence the summation order.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use vv_model::generation::{step_round, GenerationParams, PreparedVoice, StepOutcome, Utterance};
use vv_model::parity::FixtureDir;
use vv_model::sampler::GaussianNoise;
use vv_model::scheduler::SolverKind;
use vv_model::voice_preset::VoicePreset;
use vv_model::VibeVoiceModel;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");
/// Largest relative difference allowed between a batched and a lone utterance's audio.
const TOLERANCE: f32 = 1e-4;

/// The tiny model and two voices: the fixture's preset and `voices/tiny-alt.safetensors`
/// (shorter prompts, scaled values).
fn setup() -> &'static (VibeVoiceModel, [PreparedVoice; 2]) {
    static SETUP: OnceLock<(VibeVoiceModel, [PreparedVoice; 2])> = OnceLock::new();
    SETUP.get_or_init(|| {
        let fx = FixtureDir::open(Path::new(TINY)).unwrap();
        let model = fx.load_model(&Device::Cpu, DType::F32).unwrap();
        let alt = VoicePreset::load(&Path::new(TINY).join("voices/tiny-alt.safetensors")).unwrap();
        let voices = [
            PreparedVoice::new(&model, &fx.preset().unwrap()).unwrap(),
            PreparedVoice::new(&model, &alt).unwrap(),
        ];
        assert_ne!(voices[0].prompt_positions(), voices[1].prompt_positions());
        (model, voices)
    })
}

/// One utterance of the scenario.
#[derive(Clone)]
struct Plan {
    voice: usize,
    seed: u64,
    tokens: Vec<u32>,
    cfg_scale: f32,
    steps: usize,
    solver: SolverKind,
    max_frames: usize,
    /// Round in which it starts (batched run).
    start: usize,
    /// Tokens given at the start; the rest arrive `late_text` rounds later (then the input
    /// closes), or at once.
    first_tokens: usize,
    late_text: usize,
    /// Cancelled after this many frames.
    cancel_after: Option<usize>,
}

fn ids(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (seed * 37 + i * 11) % 400 + 3)
        .collect()
}

fn scenario() -> Vec<Plan> {
    let base = Plan {
        voice: 0,
        seed: 1,
        tokens: ids(1, 23),
        cfg_scale: 1.5,
        steps: 5,
        solver: SolverKind::Ode,
        max_frames: 16,
        start: 0,
        first_tokens: usize::MAX,
        late_text: 0,
        cancel_after: None,
    };
    vec![
        base.clone(),
        Plan {
            voice: 1,
            seed: 2,
            tokens: ids(2, 11),
            start: 2,
            max_frames: 9,
            ..base.clone()
        },
        Plan {
            seed: 3,
            tokens: ids(3, 14),
            cfg_scale: 2.5,
            steps: 3,
            start: 1,
            ..base.clone()
        },
        Plan {
            voice: 1,
            seed: 4,
            tokens: ids(4, 17),
            start: 0,
            cancel_after: Some(5),
            ..base.clone()
        },
        Plan {
            seed: 5,
            tokens: ids(5, 12),
            first_tokens: 3,
            late_text: 6,
            max_frames: 12,
            ..base.clone()
        },
        Plan {
            voice: 1,
            seed: 6,
            tokens: ids(6, 9),
            solver: SolverKind::Sde,
            start: 3,
            max_frames: 11,
            ..base
        },
    ]
}

fn utterance(model: &VibeVoiceModel, voices: &[PreparedVoice; 2], p: &Plan) -> Utterance {
    let params = GenerationParams {
        cfg_scale: p.cfg_scale,
        diffusion_steps: p.steps,
        solver: p.solver,
        max_frames: Some(p.max_frames),
        ..GenerationParams::default()
    };
    let mut u = Utterance::new(
        model,
        &voices[p.voice],
        params,
        Box::new(GaussianNoise::new(p.seed)),
    )
    .unwrap();
    let first = p.first_tokens.min(p.tokens.len());
    u.push_tokens(&p.tokens[..first]);
    if first == p.tokens.len() {
        u.close_input();
    }
    u
}

/// The audio frames of one utterance.
type Frames = Vec<Vec<f32>>;

/// Steps one utterance alone to its end (or its cancellation).
fn alone(model: &VibeVoiceModel, voices: &[PreparedVoice; 2], p: &Plan) -> Frames {
    let mut u = utterance(model, voices, p);
    let mut frames = Vec::new();
    loop {
        if p.cancel_after == Some(frames.len()) {
            return frames;
        }
        match u.step(model).unwrap() {
            StepOutcome::Frame { audio, last } => {
                frames.push(audio);
                if last {
                    return frames;
                }
            }
            StepOutcome::NeedText => {
                u.push_tokens(&p.tokens[p.first_tokens..]);
                u.close_input();
            }
            StepOutcome::Finished(_) => return frames,
        }
    }
}

/// Runs the whole scenario in batched rounds.
fn batched(model: &VibeVoiceModel, voices: &[PreparedVoice; 2], plans: &[Plan]) -> Vec<Frames> {
    let mut live: Vec<(usize, Utterance)> = Vec::new();
    let mut frames: Vec<Frames> = vec![Vec::new(); plans.len()];
    let mut done = vec![false; plans.len()];
    let mut max_batch = 0;
    for round in 0.. {
        for (i, p) in plans.iter().enumerate() {
            if p.start == round {
                live.push((i, utterance(model, voices, p)));
            }
            if p.start + p.late_text == round && p.first_tokens < p.tokens.len() {
                if let Some((_, u)) = live.iter_mut().find(|(j, _)| *j == i) {
                    u.push_tokens(&p.tokens[p.first_tokens..]);
                    u.close_input();
                }
            }
        }
        live.retain(|(i, _)| {
            let cancelled = plans[*i].cancel_after == Some(frames[*i].len());
            if cancelled {
                done[*i] = true;
            }
            !cancelled
        });
        if live.is_empty() && done.iter().all(|d| *d) {
            break;
        }
        assert!(round < 200, "the scenario does not end");
        max_batch = max_batch.max(live.len());
        let mut refs: Vec<&mut Utterance> = live.iter_mut().map(|(_, u)| u).collect();
        let outcomes = step_round(model, &mut refs).unwrap();
        let mut ended = Vec::new();
        for ((i, _), outcome) in live.iter().zip(outcomes) {
            match outcome {
                StepOutcome::Frame { audio, last } => {
                    frames[*i].push(audio);
                    if last {
                        ended.push(*i);
                    }
                }
                StepOutcome::NeedText => {}
                StepOutcome::Finished(_) => ended.push(*i),
            }
        }
        for i in ended {
            done[i] = true;
        }
        live.retain(|(i, _)| !done[*i]);
    }
    assert!(
        max_batch >= 5,
        "the rounds should batch most utterances, saw {max_batch}"
    );
    frames
}

#[test]
fn batched_rounds_give_every_utterance_the_audio_it_gets_alone() {
    let (model, voices) = setup();
    let plans = scenario();
    let together = batched(model, voices, &plans);
    for (i, p) in plans.iter().enumerate() {
        let lone = alone(model, voices, p);
        let got = &together[i];
        assert_eq!(got.len(), lone.len(), "utterance {i}: frame counts differ");
        assert!(!lone.is_empty(), "utterance {i} produced no audio");
        if let Some(n) = p.cancel_after {
            assert_eq!(
                lone.len(),
                n,
                "utterance {i} was cancelled after {n} frames"
            );
        }
        let peak = lone.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        let mut worst = 0f32;
        for (a, b) in got.iter().zip(&lone) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs());
            }
        }
        let rel = worst / peak.max(f32::MIN_POSITIVE);
        println!(
            "utterance {i}: {} frames, max |diff| {worst:.3e}, rel {rel:.3e}",
            lone.len()
        );
        assert!(
            rel <= TOLERANCE,
            "utterance {i}: relative difference {rel:.3e}"
        );
    }
}
