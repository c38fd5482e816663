//! Batched rounds equal stepping alone, checked on the fixture's model on any device:
//! utterances of different voices (prompts of different lengths, so caches at different
//! positions), texts, seeds, guidance, step counts, solvers and lengths, starting in different
//! rounds, one cancelled midway and one waiting for text, are advanced together by
//! [`step_round`] and one by one, and each utterance's audio is compared.
//!
//! Tolerance: per utterance, max |batched − alone| over all its samples at most
//! [`TOLERANCE`] of the largest |alone| sample (f32; scaled like every tolerance for other
//! dtypes). On the CPU the difference is exactly zero: every kernel computes a stream's values
//! the same way whatever shares its batch (the skinny matmul's per-value arithmetic does not
//! depend on the row count, and layers with many rows per stream run one GEMM per stream). On
//! CUDA, cuBLAS picks kernels by the batch's row count (and graphs replay padded buckets), so
//! summation orders differ, and the model's feedback loop can grow such differences over frames.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::generation::{step_round, GenerationParams, PreparedVoice, StepOutcome, Utterance};
use crate::parity::TensorReport;
use crate::sampler::GaussianNoise;
use crate::scheduler::SolverKind;
use crate::VibeVoiceModel;

/// Largest relative difference allowed between a batched and a lone utterance's audio (f32).
pub const TOLERANCE: f64 = 1e-4;
/// Rounds after which the scenario counts as stuck.
const MAX_ROUNDS: usize = 200;

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

fn utterance(model: &VibeVoiceModel, voices: &[PreparedVoice], p: &Plan) -> Result<Utterance> {
    let params = GenerationParams {
        cfg_scale: p.cfg_scale,
        diffusion_steps: p.steps,
        solver: p.solver,
        max_frames: Some(p.max_frames),
        ..GenerationParams::default()
    };
    let voice = &voices[p.voice % voices.len()];
    let mut u = Utterance::new(model, voice, params, Box::new(GaussianNoise::new(p.seed)))?;
    let first = p.first_tokens.min(p.tokens.len());
    u.push_tokens(&p.tokens[..first]);
    if first == p.tokens.len() {
        u.close_input();
    }
    Ok(u)
}

/// The audio frames of one utterance.
type Frames = Vec<Vec<f32>>;

/// Steps one utterance alone to its end (or its cancellation).
fn alone(model: &VibeVoiceModel, voices: &[PreparedVoice], p: &Plan) -> Result<Frames> {
    let mut u = utterance(model, voices, p)?;
    let mut frames = Vec::new();
    loop {
        if p.cancel_after == Some(frames.len()) {
            return Ok(frames);
        }
        match u.step(model)? {
            StepOutcome::Frame { audio, last } => {
                frames.push(audio);
                if last {
                    return Ok(frames);
                }
            }
            StepOutcome::NeedText => {
                u.push_tokens(&p.tokens[p.first_tokens..]);
                u.close_input();
            }
            StepOutcome::Finished(_) => return Ok(frames),
        }
    }
}

/// Runs the whole scenario in batched rounds.
fn batched(
    model: &VibeVoiceModel,
    voices: &[PreparedVoice],
    plans: &[Plan],
) -> Result<(Vec<Frames>, usize)> {
    let mut live: Vec<(usize, Utterance)> = Vec::new();
    let mut frames: Vec<Frames> = vec![Vec::new(); plans.len()];
    let mut done = vec![false; plans.len()];
    let mut max_batch = 0;
    for round in 0.. {
        for (i, p) in plans.iter().enumerate() {
            if p.start == round {
                live.push((i, utterance(model, voices, p)?));
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
        if round >= MAX_ROUNDS {
            return Err(ModelError::InvalidInput(
                "the batching scenario does not end".into(),
            ));
        }
        max_batch = max_batch.max(live.len());
        let mut refs: Vec<&mut Utterance> = live.iter_mut().map(|(_, u)| u).collect();
        let outcomes = step_round(model, &mut refs)?;
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
    Ok((frames, max_batch))
}

/// Runs the scenario batched and alone with `voices` (one or more; the fixture's preset and
/// its `voices/*` presets) and reports each utterance's audio difference, plus the largest
/// batch a round advanced (as `max_batch`, tolerance: at least 5 utterances together).
pub fn check(model: &VibeVoiceModel, voices: &[PreparedVoice]) -> Result<Vec<TensorReport>> {
    if voices.is_empty() {
        return Err(ModelError::InvalidInput("no voice to batch".into()));
    }
    let plans = scenario();
    let (together, max_batch) = batched(model, voices, &plans)?;
    let mut reports = Vec::with_capacity(plans.len() + 1);
    for (i, p) in plans.iter().enumerate() {
        let lone = alone(model, voices, p)?;
        let got = &together[i];
        if got.len() != lone.len() || lone.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "utterance {i}: {} frames batched, {} alone",
                got.len(),
                lone.len()
            )));
        }
        let flat = |frames: &Frames| -> Result<Tensor> {
            let values: Vec<f32> = frames.iter().flatten().copied().collect();
            Ok(Tensor::new(values.as_slice(), &Device::Cpu)?)
        };
        reports.push(TensorReport::new(
            "batching",
            &format!("utterance{i}.audio"),
            &flat(got)?,
            &flat(&lone)?,
            TOLERANCE,
        )?);
    }
    reports.push(TensorReport {
        component: "batching".into(),
        name: "max_batch".into(),
        max_abs: max_batch as f64,
        // Passes (0) when at least five utterances shared a round.
        rel: if max_batch >= 5 { 0.0 } else { f64::INFINITY },
        tolerance: TOLERANCE,
    });
    Ok(reports)
}
