//! Whole-generation parity: the golden run of `end_to_end.safetensors` replayed with its
//! recorded noise, free-running (our own conditions feed the next frame).

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::generation::{GenerationParams, PreparedVoice, StepOutcome, Utterance};
use crate::model::VibeVoiceModel;
use crate::parity::{GoldenFile, TensorReport};
use crate::sampler::ReplayNoise;
use crate::scheduler::SolverKind;

/// Accepted relative error of the free-running loop (drift builds up through the feedback).
pub const END_TO_END_TOLERANCE: f64 = 1e-3;

const COMPONENT: &str = "end_to_end";

/// The result of replaying the golden run.
pub struct Replay {
    /// Frames emitted.
    pub frames: usize,
    /// Emitted audio.
    pub audio: Vec<f32>,
    /// Per-frame traces.
    pub traces: Vec<crate::generation::FrameTrace>,
}

fn ids(golden: &GoldenFile, name: &str) -> Result<Vec<u32>> {
    golden
        .get(name)?
        .flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|v| {
            u32::try_from(v).map_err(|_| ModelError::Fixture {
                path: golden.path().display().to_string(),
                reason: format!("{name} holds a negative id {v}"),
            })
        })
        .collect()
}

/// Runs the golden generation: same text ids, cfg, steps and recorded noise (`noise[f, 0]`).
pub fn replay(
    model: &VibeVoiceModel,
    voice: &PreparedVoice,
    golden: &GoldenFile,
) -> Result<Replay> {
    let text = ids(golden, "input.tts_text_ids")?;
    let cfg_scale = golden
        .get("input.cfg_scale")?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let steps = golden
        .metadata()
        .get("ddpm_inference_steps")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(5);
    let noise = golden.get("input.noise")?;
    let frames = noise.dim(0)?;
    let rows = (0..frames)
        .map(|f| noise.get(f)?.get(0)?.to_dtype(DType::F32)?.to_vec1::<f32>())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let params = GenerationParams {
        cfg_scale: cfg_scale.first().copied().unwrap_or(1.5),
        diffusion_steps: steps,
        solver: SolverKind::Ode,
        ..GenerationParams::default()
    };
    let mut utt = Utterance::new(model, voice, params, Box::new(ReplayNoise::new(rows)))?;
    utt.enable_trace();
    utt.push_tokens(&text);
    utt.close_input();
    let mut audio = Vec::new();
    loop {
        match utt.step(model)? {
            StepOutcome::Frame { audio: a, .. } => audio.extend(a),
            StepOutcome::Finished(_) => break,
            StepOutcome::NeedText => {
                return Err(ModelError::InvalidInput(
                    "closed utterance asked for text".into(),
                ))
            }
        }
    }
    Ok(Replay {
        frames: utt.frames(),
        audio,
        traces: utt.traces().to_vec(),
    })
}

fn stack(rows: Vec<Vec<f32>>) -> Result<Tensor> {
    let n = rows.len();
    let w = rows.first().map_or(0, Vec::len);
    Ok(Tensor::from_vec(rows.concat(), (n, w), &Device::Cpu)?)
}

/// Replays the run and compares audio, frame count, latents, conditions and EOS logits.
pub fn check(
    model: &VibeVoiceModel,
    voice: &PreparedVoice,
    golden: &GoldenFile,
) -> Result<Vec<TensorReport>> {
    let run = replay(model, voice, golden)?;
    let want_audio = golden.get("output.audio")?.flatten_all()?;
    let hop = model.frame_samples();
    let want_frames = want_audio.dim(0)? / hop.max(1);
    let n = run.frames.min(want_frames);
    let mut reports = vec![TensorReport {
        component: COMPONENT.into(),
        name: "frames_emitted".into(),
        max_abs: (run.frames as f64 - want_frames as f64).abs(),
        rel: (run.frames as f64 - want_frames as f64).abs(),
        tolerance: 0.0,
    }];
    let got_audio = Tensor::from_slice(&run.audio[..n * hop], n * hop, &Device::Cpu)?;
    reports.push(TensorReport::new(
        COMPONENT,
        "output.audio",
        &got_audio,
        &want_audio.narrow(0, 0, n * hop)?,
        END_TO_END_TOLERANCE,
    )?);
    let traces = &run.traces[..n];
    let series: [(&str, Vec<Vec<f32>>); 4] = [
        (
            "output.latents",
            traces.iter().map(|t| t.latent.clone()).collect(),
        ),
        (
            "output.pos_condition",
            traces.iter().map(|t| t.pos_condition.clone()).collect(),
        ),
        (
            "output.neg_condition",
            traces.iter().map(|t| t.neg_condition.clone()).collect(),
        ),
        (
            "output.eos_logit",
            traces
                .iter()
                .map(|t| vec![t.eos_logit.unwrap_or(f32::NAN)])
                .collect(),
        ),
    ];
    for (name, rows) in series {
        let want = golden.get(name)?;
        let want = want.reshape((want.dim(0)?, ()))?.narrow(0, 0, n)?;
        reports.push(TensorReport::new(
            COMPONENT,
            name,
            &stack(rows)?,
            &want,
            END_TO_END_TOLERANCE,
        )?);
    }
    Ok(reports)
}
