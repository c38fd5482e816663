//! Parity of the noise schedule and DPM-Solver++ against `scheduler.safetensors`: the
//! training tables, and for each recorded run (5 steps unprefixed, 20 steps under `steps20.`)
//! the timesteps and orders exactly, the sigmas, and the x0 predictions and samples obtained by
//! feeding the recorded model outputs from the recorded initial sample.

use candle_core::{Device, IndexOp, Tensor};

use super::{GoldenFile, TensorReport};
use crate::config::DiffusionHeadConfig;
use crate::error::{ModelError, Result};
use crate::scheduler::{DpmSolver, NoiseSchedule, SolverKind};

/// Component name of the reports.
pub const COMPONENT: &str = "scheduler";
/// Largest accepted relative error of tables and trajectories (the fixture README suggests
/// 1e-5 absolute; the values are O(1), so this is about as strict).
pub const TOLERANCE: f64 = 1e-5;
/// Largest accepted relative error of the sigma table (spec 3.7: the reference's f32 sigmas
/// are not all correctly rounded, compare at ~1e-6).
pub const SIGMA_TOLERANCE: f64 = 1e-6;
/// Run prefixes of the file: the 5-step run and the 20-step run.
const RUNS: [&str; 2] = ["", "steps20."];

/// Checks the schedule tables and every recorded run the file holds.
pub fn check(cfg: &DiffusionHeadConfig, golden: &GoldenFile) -> Result<Vec<TensorReport>> {
    if let Some(algorithm) = golden.metadata().get("algorithm_type") {
        if algorithm != "dpmsolver++" {
            return Err(ModelError::Fixture {
                path: golden.path().display().to_string(),
                reason: format!("unsupported algorithm_type {algorithm:?} (only dpmsolver++)"),
            });
        }
    }
    let schedule = NoiseSchedule::from_config(cfg)?;
    let cpu = Device::Cpu;
    let mut reports = vec![
        report(
            golden,
            "betas",
            &Tensor::new(schedule.betas(), &cpu)?,
            TOLERANCE,
        )?,
        report(
            golden,
            "alphas_cumprod",
            &Tensor::new(schedule.alphas_cumprod(), &cpu)?,
            TOLERANCE,
        )?,
    ];
    for prefix in RUNS {
        if golden.contains(&format!("{prefix}input.sample")) {
            reports.extend(check_run(&schedule, golden, prefix)?);
        }
    }
    Ok(reports)
}

/// One recorded run: the solver with as many steps as `{prefix}input.model_outputs` has.
fn check_run(
    schedule: &NoiseSchedule,
    golden: &GoldenFile,
    prefix: &str,
) -> Result<Vec<TensorReport>> {
    let name = |n: &str| format!("{prefix}{n}");
    let outputs = golden.get(&name("input.model_outputs"))?;
    let solver = DpmSolver::from_schedule(schedule, outputs.dim(0)?, SolverKind::Ode)?;
    let cpu = Device::Cpu;
    let as_i64 = |v: Vec<usize>| v.into_iter().map(|x| x as i64).collect::<Vec<_>>();

    let mut x = golden.get(&name("input.sample"))?.clone();
    let mut frame = solver.begin_frame();
    let (mut x0s, mut samples) = (Vec::new(), Vec::new());
    for k in 0..solver.num_steps() {
        let step = frame.step(&outputs.i(k)?, &x, None)?;
        x0s.push(step.x0.unsqueeze(0)?);
        samples.push(step.sample.unsqueeze(0)?);
        x = step.sample;
    }
    Ok(vec![
        report(
            golden,
            &name("timesteps"),
            &Tensor::new(as_i64(solver.timesteps()).as_slice(), &cpu)?,
            0.0,
        )?,
        report(
            golden,
            &name("output.solver_order_used"),
            &Tensor::new(as_i64(solver.orders()).as_slice(), &cpu)?,
            0.0,
        )?,
        report(
            golden,
            &name("sigmas"),
            &Tensor::new(solver.sigmas(), &cpu)?,
            SIGMA_TOLERANCE,
        )?,
        report(
            golden,
            &name("output.x0_pred"),
            &Tensor::cat(&x0s, 0)?,
            TOLERANCE,
        )?,
        report(
            golden,
            &name("output.prev_sample"),
            &Tensor::cat(&samples, 0)?,
            TOLERANCE,
        )?,
    ])
}

/// Compares `got` with the golden tensor `name`; timesteps and orders use tolerance 0 (exact).
fn report(golden: &GoldenFile, name: &str, got: &Tensor, tolerance: f64) -> Result<TensorReport> {
    TensorReport::new(COMPONENT, name, got, golden.get(name)?, tolerance)
}
