//! The noise schedule and the DPM-Solver++ update (spec section 3.7), for any number of
//! inference steps and any number of training timesteps.
//!
//! Settings are the ones the reference builds: cosine ("GLIDE") betas, v-prediction,
//! solver order 2 with the midpoint rule, final sigma zero, linspace timestep spacing. Two
//! variants: deterministic `dpmsolver++` ([`SolverKind::Ode`], file demo) and stochastic
//! `sde-dpmsolver++` ([`SolverKind::Sde`], web demo; the caller supplies fresh N(0, 1) noise
//! each step).
//!
//! The schedule tables and the per-step coefficients are scalars computed once, in f32 with the
//! same operation order as the reference (which evaluates them on 0-d f32 tensors), so the
//! update matches it to the last bit in exact arithmetic. The update itself runs on tensors of
//! any device and any batch: `x' = a·x + b·D0 (+ ½b·D1) (+ c·ε)`. A [`FrameSolver`] holds the
//! per-frame state (step index and previous x0 prediction); start a new one for every frame.

use candle_core::Tensor;

use crate::config::DiffusionHeadConfig;
use crate::error::{ModelError, Result};

/// Largest beta of the cosine schedule.
const MAX_BETA: f64 = 0.999;

/// Which DPM-Solver++ variant steps the latent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SolverKind {
    /// Deterministic `dpmsolver++` (the file demo).
    #[default]
    Ode,
    /// Stochastic `sde-dpmsolver++` (the web demo): fresh Gaussian noise every step.
    Sde,
}

/// The training noise schedule: betas and cumulative alpha products, stored as f32.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    betas: Vec<f32>,
    alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// The cosine schedule with `num_train_timesteps` steps: betas computed in f64 and stored
    /// f32; `1 - beta` in f32; the cumulative product accumulated in f64 (as PyTorch's CPU
    /// `cumprod` does) and stored f32.
    pub fn cosine(num_train_timesteps: usize) -> Self {
        let alpha_bar = |t: f64| {
            ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                .cos()
                .powi(2)
        };
        let n = num_train_timesteps as f64;
        let betas: Vec<f32> = (0..num_train_timesteps)
            .map(|i| {
                let (t1, t2) = (i as f64 / n, (i + 1) as f64 / n);
                (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(MAX_BETA) as f32
            })
            .collect();
        let mut acc = 1.0f64;
        let alphas_cumprod = betas
            .iter()
            .map(|&beta| {
                acc *= f64::from(1.0f32 - beta);
                acc as f32
            })
            .collect();
        Self {
            betas,
            alphas_cumprod,
        }
    }

    /// The schedule a diffusion-head config asks for (only `cosine` / `squaredcos_cap_v2`
    /// exist in the reference model).
    pub fn from_config(cfg: &DiffusionHeadConfig) -> Result<Self> {
        match cfg.ddpm_beta_schedule.as_str() {
            "cosine" | "squaredcos_cap_v2" => {}
            other => {
                return Err(ModelError::InvalidConfig(format!(
                    "unsupported ddpm_beta_schedule {other:?} (expected \"cosine\")"
                )))
            }
        }
        if cfg.prediction_type != "v_prediction" {
            return Err(ModelError::InvalidConfig(format!(
                "unsupported prediction_type {:?} (expected \"v_prediction\")",
                cfg.prediction_type
            )));
        }
        if cfg.ddpm_num_steps < 2 {
            return Err(ModelError::InvalidConfig(format!(
                "ddpm_num_steps must be at least 2, got {}",
                cfg.ddpm_num_steps
            )));
        }
        Ok(Self::cosine(cfg.ddpm_num_steps))
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Whether the schedule has no timesteps.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `beta_i`, i = 0..len.
    pub fn betas(&self) -> &[f32] {
        &self.betas
    }

    /// `prod_{j<=i} (1 - beta_j)`, i = 0..len.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// Noise-to-signal ratio `sqrt((1 - ac_t) / ac_t)` in f32 as the reference forms it, or
    /// `None` outside the schedule.
    pub fn sigma(&self, t: usize) -> Option<f32> {
        let ac = *self.alphas_cumprod.get(t)?;
        Some(((1.0 - ac) / ac).sqrt())
    }

    /// Inference timesteps for `num_steps` steps with linspace spacing: the reversed, rounded
    /// (half to even) `linspace(0, len - 1, num_steps + 1)` without its final 0.
    pub fn linspace_timesteps(&self, num_steps: usize) -> Vec<usize> {
        let last = (self.len() as f64) - 1.0;
        let step = last / num_steps as f64;
        (1..=num_steps)
            .rev()
            .map(|k| {
                let v = if k == num_steps {
                    last
                } else {
                    k as f64 * step
                };
                v.round_ties_even() as usize
            })
            .collect()
    }
}

/// `(alpha, sigma)` of a noise-to-signal ratio: `alpha = 1/sqrt(s² + 1)`, `sigma = s·alpha`.
fn alpha_sigma(s: f32) -> (f32, f32) {
    let alpha = 1.0 / (s * s + 1.0).sqrt();
    (alpha, s * alpha)
}

/// `lambda = ln(alpha) - ln(sigma)` (+inf at sigma 0).
fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

/// The scalars of one solver step `k` (from timestep `ts[k]` to the next sigma).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    /// Scheduler timestep `t` of this step (the head is evaluated at it).
    pub timestep: usize,
    /// Solver order used (1 or 2).
    pub order: usize,
    /// `alpha_s` of the current sigma (x0 = alpha_s·x - sigma_s·v).
    pub alpha_s: f32,
    /// `sigma_s` of the current sigma.
    pub sigma_s: f32,
    /// `lambda_s` of the current sigma.
    pub lambda_s: f32,
    /// `h = lambda_t - lambda_s` (+inf at the last step).
    pub h: f32,
    /// `r = (lambda_s - lambda_{s-1}) / h` on second-order steps.
    pub r: Option<f32>,
    /// `1/r`, which scales `D1 = (x0 - m1)/r`, on second-order steps.
    pub inv_r: Option<f32>,
    /// `a`: factor of the current sample.
    pub sample_coef: f32,
    /// `b`: factor of `D0 = x0` (and `b/2` of `D1`).
    pub x0_coef: f32,
    /// `c`: factor of the step noise (0 for the ODE solver).
    pub noise_coef: f32,
}

/// A DPM-Solver++ schedule for a fixed number of steps: timesteps, sigmas and coefficients.
#[derive(Debug, Clone)]
pub struct DpmSolver {
    kind: SolverKind,
    sigmas: Vec<f32>,
    steps: Vec<StepCoefficients>,
}

impl DpmSolver {
    /// The solver the model builds from its diffusion-head config, with `num_steps` steps.
    pub fn new(cfg: &DiffusionHeadConfig, num_steps: usize, kind: SolverKind) -> Result<Self> {
        Self::from_schedule(&NoiseSchedule::from_config(cfg)?, num_steps, kind)
    }

    /// A solver over an explicit training schedule; `num_steps` must be in `1..len` (fewer
    /// steps than training timesteps keeps the rounded linspace timesteps distinct).
    pub fn from_schedule(
        schedule: &NoiseSchedule,
        num_steps: usize,
        kind: SolverKind,
    ) -> Result<Self> {
        if num_steps == 0 || num_steps >= schedule.len() {
            return Err(ModelError::InvalidInput(format!(
                "diffusion steps must be in 1..{}, got {num_steps}",
                schedule.len()
            )));
        }
        let timesteps = schedule.linspace_timesteps(num_steps);
        let mut sigmas = timesteps
            .iter()
            .map(|&t| {
                schedule.sigma(t).ok_or_else(|| {
                    ModelError::InvalidInput(format!("timestep {t} outside the schedule"))
                })
            })
            .collect::<Result<Vec<f32>>>()?;
        sigmas.push(0.0);
        let steps = timesteps
            .iter()
            .enumerate()
            .map(|(k, &t)| step_coefficients(&sigmas, k, t, kind))
            .collect();
        Ok(Self {
            kind,
            sigmas,
            steps,
        })
    }

    /// Which variant this solver runs.
    pub fn kind(&self) -> SolverKind {
        self.kind
    }

    /// Number of steps N.
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// The N timesteps, descending (e.g. 999, 799, 599, 400, 200).
    pub fn timesteps(&self) -> Vec<usize> {
        self.steps.iter().map(|s| s.timestep).collect()
    }

    /// The N + 1 sigmas (noise-to-signal ratios), the last one 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The order of each step (first and last steps are first order).
    pub fn orders(&self) -> Vec<usize> {
        self.steps.iter().map(|s| s.order).collect()
    }

    /// The scalars of every step.
    pub fn coefficients(&self) -> &[StepCoefficients] {
        &self.steps
    }

    /// Fresh per-frame state; every frame starts with a new one.
    pub fn begin_frame(&self) -> FrameSolver<'_> {
        FrameSolver {
            solver: self,
            index: 0,
            prev_x0: None,
        }
    }
}

/// Coefficients of step `k` (f32, reference operation order).
fn step_coefficients(
    sigmas: &[f32],
    k: usize,
    timestep: usize,
    kind: SolverKind,
) -> StepCoefficients {
    let n = sigmas.len() - 1;
    let (alpha_s, sigma_s) = alpha_sigma(sigmas[k]);
    let (alpha_t, sigma_t) = alpha_sigma(sigmas[k + 1]);
    let lambda_s = lambda(alpha_s, sigma_s);
    let h = lambda(alpha_t, sigma_t) - lambda_s;
    let order = if k == 0 || k + 1 == n { 1 } else { 2 };
    let r = (order == 2).then(|| {
        let (alpha_p, sigma_p) = alpha_sigma(sigmas[k - 1]);
        (lambda_s - lambda(alpha_p, sigma_p)) / h
    });
    let (sample_coef, x0_coef, noise_coef) = match kind {
        SolverKind::Ode => (sigma_t / sigma_s, -(alpha_t * ((-h).exp() - 1.0)), 0.0),
        SolverKind::Sde => {
            let decay = (-2.0 * h).exp();
            (
                sigma_t / sigma_s * (-h).exp(),
                alpha_t * (1.0 - decay),
                sigma_t * (1.0 - decay).sqrt(),
            )
        }
    };
    StepCoefficients {
        timestep,
        order,
        alpha_s,
        sigma_s,
        lambda_s,
        h,
        r,
        inv_r: r.map(|r| 1.0 / r),
        sample_coef,
        x0_coef,
        noise_coef,
    }
}

/// What one solver step produced.
#[derive(Debug, Clone)]
pub struct SolverStep {
    /// The data prediction `x0 = alpha_s·x - sigma_s·v`.
    pub x0: Tensor,
    /// The sample after the step.
    pub sample: Tensor,
}

/// The per-frame solver state: step index and the previous x0 prediction.
#[derive(Debug)]
pub struct FrameSolver<'a> {
    solver: &'a DpmSolver,
    index: usize,
    prev_x0: Option<Tensor>,
}

impl FrameSolver<'_> {
    /// Index of the next step (0..N).
    pub fn step_index(&self) -> usize {
        self.index
    }

    /// The coefficients of the next step, or `None` once the frame is finished.
    pub fn next_step(&self) -> Option<&StepCoefficients> {
        self.solver.steps.get(self.index)
    }

    /// One step: `v` is the (guided) v prediction for the current sample `x` (same shape,
    /// f32); `noise` (same shape) is required by the SDE solver and ignored by the ODE one.
    pub fn step(&mut self, v: &Tensor, x: &Tensor, noise: Option<&Tensor>) -> Result<SolverStep> {
        let co = *self.next_step().ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "all {} solver steps of this frame are done",
                self.solver.num_steps()
            ))
        })?;
        let x0 = ((x * f64::from(co.alpha_s))? - (v * f64::from(co.sigma_s))?)?;
        let mut sample = ((x * f64::from(co.sample_coef))? + (&x0 * f64::from(co.x0_coef))?)?;
        if let (Some(inv_r), Some(m1)) = (co.inv_r, &self.prev_x0) {
            let d1 = ((&x0 - m1)? * f64::from(inv_r))?;
            sample = (sample + (d1 * f64::from(0.5 * co.x0_coef))?)?;
        }
        if self.solver.kind == SolverKind::Sde {
            let eps = noise.ok_or_else(|| {
                ModelError::InvalidInput("the SDE solver needs noise at every step".into())
            })?;
            sample = (sample + (eps * f64::from(co.noise_coef))?)?;
        }
        self.prev_x0 = Some(x0.clone());
        self.index += 1;
        Ok(SolverStep { x0, sample })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use proptest::prelude::*;

    fn solver(n: usize, kind: SolverKind) -> DpmSolver {
        DpmSolver::from_schedule(&NoiseSchedule::cosine(1000), n, kind).unwrap()
    }

    /// One row of the spec 3.7 table: timestep, sigma~, order, ODE (a, b), SDE (a, b, c).
    struct Row {
        t: usize,
        sigma: f64,
        order: usize,
        ode: [f64; 2],
        sde: [f64; 3],
    }

    /// Spec 3.7 table, N = 5.
    const TABLE5: [Row; 5] = [
        Row {
            t: 999,
            sigma: 20291.3,
            order: 1,
            ode: [0.951816, 0.306622],
            sde: [1.456e-4, 0.306669, 0.951816],
        },
        Row {
            t: 799,
            sigma: 3.10373,
            order: 2,
            ode: [0.853006, 0.322199],
            sde: [0.382224, 0.466573, 0.725834],
        },
        Row {
            t: 599,
            sigma: 1.39075,
            order: 2,
            ode: [0.732830, 0.375915],
            sde: [0.390077, 0.576011, 0.503696],
        },
        Row {
            t: 400,
            sigma: 0.740281,
            order: 2,
            ode: [0.537397, 0.515580],
            sde: [0.244975, 0.750609, 0.284591],
        },
        Row {
            t: 200,
            sigma: 0.337461,
            order: 1,
            ode: [0.0, 1.0],
            sde: [0.0, 1.0, 0.0],
        },
    ];

    #[test]
    fn five_step_table_matches_the_spec() {
        let (ode, sde) = (solver(5, SolverKind::Ode), solver(5, SolverKind::Sde));
        assert_eq!(ode.timesteps(), vec![999, 799, 599, 400, 200]);
        assert_eq!(ode.orders(), vec![1, 2, 2, 2, 1]);
        assert_eq!(ode.sigmas()[5], 0.0);
        let close = |got: f32, want: f64, tol: f64| {
            assert!(
                (f64::from(got) - want).abs() <= tol,
                "got {got}, want {want}"
            )
        };
        for (k, row) in TABLE5.iter().enumerate() {
            let (o, s) = (ode.coefficients()[k], sde.coefficients()[k]);
            assert_eq!((o.timestep, o.order), (row.t, row.order));
            // sigma~ to the table's 6 significant digits
            close(ode.sigmas()[k], row.sigma, row.sigma * 5e-6);
            close(o.sample_coef, row.ode[0], 1e-5);
            close(o.x0_coef, row.ode[1], 1e-5);
            assert_eq!(o.noise_coef, 0.0);
            close(s.sample_coef, row.sde[0], 1e-5);
            close(s.x0_coef, row.sde[1], 1e-5);
            close(s.noise_coef, row.sde[2], 1e-5);
        }
        let c1 = ode.coefficients()[1];
        close(c1.alpha_s, 0.306669, 1e-5);
        close(c1.sigma_s, 0.951816, 1e-5);
        close(c1.lambda_s, -1.1326, 1e-4);
        close(c1.h, 0.80276, 1e-5);
        close(c1.r.unwrap(), 10.9439, 1e-3);
        assert!(ode.coefficients()[4].h.is_infinite());
    }

    #[test]
    fn schedule_reference_points() {
        let s = NoiseSchedule::cosine(1000);
        assert_eq!(s.betas()[999], 0.999);
        assert!((f64::from(s.alphas_cumprod()[999]) - 2.43e-9).abs() < 0.01e-9);
        assert!((f64::from(s.sigma(0).unwrap()) - 0.006427).abs() < 1e-6);
    }

    #[test]
    fn twenty_steps_are_first_order_only_at_the_ends() {
        let s = solver(20, SolverKind::Ode);
        let mut want = vec![2; 20];
        want[0] = 1;
        want[19] = 1;
        assert_eq!(s.orders(), want);
        let t = s.timesteps();
        assert_eq!((t[0], t[9], t[10], t[19]), (999, 549, 500, 50));
        assert_eq!(
            solver(10, SolverKind::Ode).timesteps(),
            vec![999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
        );
    }

    #[test]
    fn both_solvers_return_x0_at_the_last_step() {
        let d = Device::Cpu;
        for kind in [SolverKind::Ode, SolverKind::Sde] {
            let s = solver(5, kind);
            let mut frame = s.begin_frame();
            let mut x = Tensor::new(&[[0.5f32, -1.0, 2.0]], &d).unwrap();
            for k in 0..5 {
                let v = Tensor::new(&[[0.1f32 * k as f32, 0.3, -0.7]], &d).unwrap();
                let noise = Tensor::new(&[[1.5f32, -0.5, 0.25]], &d).unwrap();
                let out = frame.step(&v, &x, Some(&noise)).unwrap();
                let got: Vec<f32> = out.sample.flatten_all().unwrap().to_vec1().unwrap();
                assert!(
                    got.iter().all(|v| v.is_finite()),
                    "{kind:?} step {k}: {got:?}"
                );
                if k == 4 {
                    let x0: Vec<f32> = out.x0.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(got, x0, "{kind:?}");
                }
                x = out.sample;
            }
            assert!(frame.next_step().is_none());
            let v = x.zeros_like().unwrap();
            assert!(frame.step(&v, &x, None).is_err());
        }
    }

    #[test]
    fn sde_step_without_noise_is_an_error() {
        let d = Device::Cpu;
        let s = solver(5, SolverKind::Sde);
        let x = Tensor::zeros((1, 4), candle_core::DType::F32, &d).unwrap();
        let err = s.begin_frame().step(&x, &x, None).unwrap_err();
        assert_eq!(err.code(), "invalid_input");
    }

    #[test]
    fn step_counts_outside_the_schedule_are_rejected() {
        let sched = NoiseSchedule::cosine(1000);
        assert!(DpmSolver::from_schedule(&sched, 0, SolverKind::Ode).is_err());
        assert!(DpmSolver::from_schedule(&sched, 1000, SolverKind::Ode).is_err());
        let all = DpmSolver::from_schedule(&sched, 999, SolverKind::Ode).unwrap();
        assert_eq!(all.timesteps(), (1..=999).rev().collect::<Vec<_>>());
        let one = DpmSolver::from_schedule(&sched, 1, SolverKind::Ode).unwrap();
        assert_eq!((one.timesteps(), one.orders()), (vec![999], vec![1]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Every accepted (train steps, inference steps, kind) gives finite coefficients and a
        /// NaN-free trajectory that ends on x0.
        #[test]
        fn no_nan_for_any_step_count(
            train in 2usize..2500,
            frac in 0.0f64..1.0,
            sde in any::<bool>(),
            seed in any::<u32>(),
        ) {
            let sched = NoiseSchedule::cosine(train);
            let n = 1 + ((train - 2) as f64 * frac) as usize;
            let kind = if sde { SolverKind::Sde } else { SolverKind::Ode };
            let s = DpmSolver::from_schedule(&sched, n, kind).unwrap();
            prop_assert_eq!(s.num_steps(), n);
            prop_assert!(s.timesteps().windows(2).all(|w| w[1] < w[0]));
            for c in s.coefficients() {
                prop_assert!(c.sample_coef.is_finite() && c.x0_coef.is_finite());
                prop_assert!(c.noise_coef.is_finite() && c.alpha_s.is_finite());
                prop_assert!(c.inv_r.is_none_or(f32::is_finite));
            }
            let d = Device::Cpu;
            let wave = |k: usize| -> Vec<f32> {
                (0..4).map(|i| ((seed as usize + 7 * k + i) as f32 * 0.37).sin()).collect()
            };
            let mut x = Tensor::from_vec(wave(0), (1, 4), &d).unwrap();
            let mut frame = s.begin_frame();
            let mut last = None;
            for k in 0..n {
                let v = Tensor::from_vec(wave(k + 1), (1, 4), &d).unwrap();
                let eps = Tensor::from_vec(wave(k + 100), (1, 4), &d).unwrap();
                let out = frame.step(&v, &x, Some(&eps)).unwrap();
                let vals: Vec<f32> = out.sample.flatten_all().unwrap().to_vec1().unwrap();
                prop_assert!(vals.iter().all(|v| v.is_finite()), "step {}: {:?}", k, vals);
                last = Some(out.x0.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                x = out.sample;
            }
            prop_assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), last.unwrap());
        }
    }
}
