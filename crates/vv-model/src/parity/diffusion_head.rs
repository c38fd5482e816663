//! Parity of the diffusion head against `diffusion_head.safetensors` (every intermediate), and
//! teacher-forced sampling against `end_to_end.safetensors`: for every frame, the golden
//! conditions and initial noise (`noise[f, 0]`) through CFG + DPM-Solver++ must give the golden
//! latent.

use candle_core::{DType, Device, IndexOp, Tensor};

use super::lm::golden_report;
use super::{GoldenFile, TensorReport};
use crate::config::DiffusionHeadConfig;
use crate::diffusion_head::DiffusionHead;
use crate::error::{ModelError, Result};
use crate::sampler::{DiffusionSampler, FrameBatch};
use crate::scheduler::{DpmSolver, SolverKind};

/// Component name of the head reports.
pub const COMPONENT: &str = "diffusion_head";
/// Component name of the teacher-forced sampling reports.
pub const SAMPLING_COMPONENT: &str = "sampling";
/// Largest accepted relative error (`max|a−b| / max|b|`) of every head and sampling tensor.
pub const TOLERANCE: f64 = 1e-4;

/// Runs the head on the golden inputs; reports `output.prediction` and every `debug.*`
/// intermediate the file holds.
pub fn check(head: &DiffusionHead, golden: &GoldenFile) -> Result<Vec<TensorReport>> {
    let x = golden.get("input.noisy_latent")?;
    let t: Vec<f32> = golden
        .get("input.timesteps")?
        .to_dtype(DType::F32)?
        .to_vec1()?;
    let c = golden.get("input.condition")?;
    let (prediction, trace) = head.forward_traced(x, &t, c)?;
    let mut reports = vec![golden_report(
        COMPONENT,
        TOLERANCE,
        golden,
        "output.prediction",
        &prediction,
    )?];
    for (name, value) in &trace {
        let name = format!("debug.{name}");
        if golden.contains(&name) {
            reports.push(golden_report(COMPONENT, TOLERANCE, golden, &name, value)?);
        }
    }
    Ok(reports)
}

/// Teacher-forced sampling: for every frame f, `output.pos_condition[f]`,
/// `output.neg_condition[f]`, initial noise `input.noise[f, 0]`, guidance `input.cfg_scale`
/// and the deterministic solver with as many steps as `debug.diffusion.timesteps`. Reports
/// the timesteps, each frame's latent (`output.latents[f]`) and, over all frames, the per-step
/// `debug.diffusion.{v_cond, v_uncond, v_guided}` and row 0 of `debug.diffusion.sample`.
pub fn check_sampling(
    head: &DiffusionHead,
    cfg: &DiffusionHeadConfig,
    golden: &GoldenFile,
) -> Result<Vec<TensorReport>> {
    let golden_timesteps = golden.get("debug.diffusion.timesteps")?;
    let solver = DpmSolver::new(cfg, golden_timesteps.elem_count(), SolverKind::Ode)?;
    let timesteps: Vec<i64> = solver.timesteps().iter().map(|&t| t as i64).collect();
    let mut reports = vec![TensorReport::new(
        SAMPLING_COMPONENT,
        "debug.diffusion.timesteps",
        &Tensor::new(timesteps.as_slice(), golden_timesteps.device())?,
        golden_timesteps,
        0.0,
    )?];
    let sampler = DiffusionSampler::new(head, solver)?;
    let guidance = scalar(golden, "input.cfg_scale")?;
    let positive = golden.get("output.pos_condition")?;
    let negative = golden.get("output.neg_condition")?;
    let noise = golden.get("input.noise")?;
    let frames = positive.dim(0)?;

    // Per-step guidance terms (v_cond, v_uncond, v_guided) and samples, all frames in order.
    let mut v_terms: [Vec<Tensor>; 3] = Default::default();
    let mut samples = Vec::with_capacity(frames * (sampler.solver().num_steps() + 1));
    for f in 0..frames {
        let x_t = noise.i((f, 0..1))?;
        let batch = FrameBatch {
            positive: &positive.i(f..f + 1)?,
            negative: &negative.i(f..f + 1)?,
            guidance: &[guidance],
            noise: &x_t,
        };
        samples.push(x_t.clone());
        let latent = sampler.sample_batch_observed(batch, &mut [], &mut |step| {
            v_terms[0].push(step.v_positive.clone());
            v_terms[1].push(step.v_negative.clone());
            v_terms[2].push(step.v_guided.clone());
            samples.push(step.sample.clone());
        })?;
        let name = format!("output.latents[{f}]");
        let want = golden.get("output.latents")?.i(f)?;
        reports.push(TensorReport::new(
            SAMPLING_COMPONENT,
            &name,
            &latent,
            &want,
            TOLERANCE,
        )?);
    }
    for (name, values) in ["v_cond", "v_uncond", "v_guided"].iter().zip(&v_terms) {
        let name = format!("debug.diffusion.{name}");
        if golden.contains(&name) {
            let got = Tensor::cat(values, 0)?;
            reports.push(golden_report(
                SAMPLING_COMPONENT,
                TOLERANCE,
                golden,
                &name,
                &got,
            )?);
        }
    }
    if golden.contains("debug.diffusion.sample") {
        // [N, steps + 1, 2, latent]: row 0 is the real sample.
        let want = golden.get("debug.diffusion.sample")?.i((.., .., 0))?;
        // The golden noise rows are CPU f32; the solver's samples live on the model's device.
        let samples = samples
            .iter()
            .map(|t| t.to_device(&Device::Cpu)?.to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let got = Tensor::cat(&samples, 0)?;
        reports.push(TensorReport::new(
            SAMPLING_COMPONENT,
            "debug.diffusion.sample[:, :, 0]",
            &got,
            &want,
            TOLERANCE,
        )?);
    }
    Ok(reports)
}

/// The single value of a one-element tensor, as f32.
fn scalar(golden: &GoldenFile, name: &str) -> Result<f32> {
    let values: Vec<f32> = golden
        .get(name)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    match values[..] {
        [v] => Ok(v),
        _ => Err(ModelError::Fixture {
            path: golden.path().display().to_string(),
            reason: format!("{name} should hold one value, has {}", values.len()),
        }),
    }
}
