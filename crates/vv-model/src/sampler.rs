//! Per-frame latent sampling with classifier-free guidance (spec section 3.8), batched over
//! frames: B frames (e.g. of different utterances) share one head call of 2B rows per step.
//!
//! For each solver step the head sees rows `[x_1..x_B, x_1..x_B]` with conditions
//! `[c⁺_1..c⁺_B, c⁻_1..c⁻_B]`; the guided prediction `v = v⁻ + w·(v⁺ − v⁻)` drives the
//! scheduler. `cond_proj` of the 2B conditions is computed once per frame and the timestep
//! embeddings once per [`DiffusionSampler`] (they only depend on the schedule).
//!
//! Randomness comes from the caller: the initial noise `x_T` per frame and, for the SDE
//! solver, a [`NoiseSource`] per row drawn once per step.

use std::collections::VecDeque;

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::diffusion_head::DiffusionHead;
use crate::error::{ModelError, Result};
use crate::scheduler::{DpmSolver, SolverKind};

/// A stream of standard-normal vectors (initial latents and SDE step noise).
pub trait NoiseSource: Send {
    /// The next vector of `len` independent N(0, 1) values.
    fn next_vector(&mut self, len: usize) -> Result<Vec<f32>>;
}

/// Seeded Gaussian noise (`StdRng` + `StandardNormal`): reproducible for a given seed.
#[derive(Debug, Clone)]
pub struct GaussianNoise {
    rng: StdRng,
}

impl GaussianNoise {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

impl NoiseSource for GaussianNoise {
    fn next_vector(&mut self, len: usize) -> Result<Vec<f32>> {
        Ok((0..len).map(|_| self.rng.sample(StandardNormal)).collect())
    }
}

/// Replays recorded vectors in order (golden parity: frame f uses the reference's
/// `noise[f, 0]`); asking past the end, or for a length other than the next vector's, is an
/// error (and consumes nothing).
#[derive(Debug, Clone, Default)]
pub struct ReplayNoise {
    vectors: VecDeque<Vec<f32>>,
}

impl ReplayNoise {
    /// Replays `vectors` in order.
    pub fn new(vectors: Vec<Vec<f32>>) -> Self {
        Self {
            vectors: vectors.into(),
        }
    }

    /// Vectors not consumed yet.
    pub fn remaining(&self) -> usize {
        self.vectors.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn next_vector(&mut self, len: usize) -> Result<Vec<f32>> {
        let next = self
            .vectors
            .front()
            .ok_or_else(|| ModelError::InvalidInput("recorded noise is exhausted".into()))?;
        if next.len() != len {
            return Err(ModelError::InvalidInput(format!(
                "recorded noise vector has {} values, {len} requested",
                next.len()
            )));
        }
        Ok(self.vectors.pop_front().unwrap_or_default())
    }
}

/// The inputs of B frames sampled together.
#[derive(Debug, Clone, Copy)]
pub struct FrameBatch<'a> {
    /// Positive conditions (last TTS-LM hidden state), `[B, H]`, any dtype.
    pub positive: &'a Tensor,
    /// Negative (unconditional) conditions, `[B, H]`.
    pub negative: &'a Tensor,
    /// Guidance scale per frame (B values).
    pub guidance: &'a [f32],
    /// Initial noise `x_T`, `[B, latent]`.
    pub noise: &'a Tensor,
}

/// What a sampling observer sees after each solver step (for diagnostics and parity).
#[derive(Debug, Clone, Copy)]
pub struct SamplerStep<'a> {
    /// Step index k.
    pub index: usize,
    /// `v⁺`, `[B, latent]`.
    pub v_positive: &'a Tensor,
    /// `v⁻`, `[B, latent]`.
    pub v_negative: &'a Tensor,
    /// The guided `v`, `[B, latent]`.
    pub v_guided: &'a Tensor,
    /// The sample after the step, `[B, latent]`.
    pub sample: &'a Tensor,
}

/// Samples frame latents with a fixed head and solver schedule; caches the timestep
/// embeddings of the schedule.
#[derive(Debug, Clone)]
pub struct DiffusionSampler {
    head: DiffusionHead,
    solver: DpmSolver,
    /// Timestep embeddings of the schedule, `[steps, H]`.
    temb: Tensor,
}

impl DiffusionSampler {
    /// A sampler running `head` (cheap to clone: weights are shared) over `solver`'s schedule.
    pub fn new(head: &DiffusionHead, solver: DpmSolver) -> Result<Self> {
        let t: Vec<f32> = solver.timesteps().iter().map(|&t| t as f32).collect();
        Ok(Self {
            head: head.clone(),
            temb: head.timestep_embedding(&t)?,
            solver,
        })
    }

    /// Every step's timestep embedding repeated for `rows` head rows, step-major:
    /// `[steps·rows, H]`, contiguous.
    pub(crate) fn timestep_rows(&self, rows: usize) -> Result<Tensor> {
        let (steps, h) = self.temb.dims2()?;
        Ok(self
            .temb
            .unsqueeze(1)?
            .broadcast_as((steps, rows, h))?
            .contiguous()?
            .reshape((steps * rows, h))?)
    }

    /// The solver schedule in use.
    pub fn solver(&self) -> &DpmSolver {
        &self.solver
    }

    /// The head in use.
    pub fn head(&self) -> &DiffusionHead {
        &self.head
    }

    /// Samples one frame: conditions `[H]` (or `[1, H]`), initial noise of `latent` values;
    /// `step_noise` is required by the SDE solver. Returns the latent z as a `[1, latent]` f32
    /// tensor left on the head's device: no host round trip, so a caller can queue the decoder
    /// while the GPU is still sampling.
    pub fn sample(
        &self,
        positive: &Tensor,
        negative: &Tensor,
        guidance: f32,
        noise: &[f32],
        step_noise: Option<&mut dyn NoiseSource>,
    ) -> Result<Tensor> {
        let h = self.head.hidden_size();
        let mut sources: Vec<&mut dyn NoiseSource> = step_noise.into_iter().collect();
        self.sample_frames(
            &positive.reshape((1, h))?,
            &negative.reshape((1, h))?,
            &[guidance],
            noise,
            &mut sources,
        )
    }

    /// Samples B frames of a round: conditions `[B, H]` on the head's device, one guidance
    /// scale per frame, the initial noise `B·latent` values (row `b` for frame `b`), and for the
    /// SDE solver one step-noise source per frame. Returns z `[B, latent]` f32 on the head's
    /// device. On CUDA the ODE solver replays the graph of the batch's bucket.
    pub fn sample_frames(
        &self,
        positive: &Tensor,
        negative: &Tensor,
        guidance: &[f32],
        noise: &[f32],
        step_noise: &mut [&mut dyn NoiseSource],
    ) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if step_noise.is_empty() {
            if let Some(z) =
                crate::graphs::sampler::sample(self, positive, negative, guidance, noise)?
            {
                return Ok(z);
            }
        }
        let device = self.head.device();
        let latent = self.head.latent_size();
        let rows = noise.len() / latent.max(1);
        let noise = Tensor::from_slice(noise, (rows, latent), device)?;
        let batch = FrameBatch {
            positive,
            negative,
            guidance,
            noise: &noise,
        };
        self.sample_batch(batch, step_noise)
    }

    /// Samples B frames at once; returns `[B, latent]` f32. `step_noise` holds one source
    /// per frame for the SDE solver (row b draws from `step_noise[b]`) and may be empty for
    /// the ODE solver.
    pub fn sample_batch(
        &self,
        batch: FrameBatch<'_>,
        step_noise: &mut [&mut dyn NoiseSource],
    ) -> Result<Tensor> {
        self.sample_batch_observed(batch, step_noise, &mut |_| {})
    }

    /// [`Self::sample_batch`], calling `observe` after every solver step.
    pub fn sample_batch_observed(
        &self,
        batch: FrameBatch<'_>,
        step_noise: &mut [&mut dyn NoiseSource],
        observe: &mut dyn FnMut(SamplerStep<'_>),
    ) -> Result<Tensor> {
        let b = self.validate(&batch, step_noise.len())?;
        let guidance = Tensor::from_slice(batch.guidance, (b, 1), self.head.device())?;
        let temb = self.timestep_rows(2 * b)?;
        self.run_frame(&batch, &guidance, &temb, step_noise, observe)
    }

    /// The sampling loop proper, device operations only (no host data): `guidance` holds the
    /// batch's guidance scales as f32 on the head's device (`[B, 1]`, or `[B, latent]`), and
    /// `temb` the timestep rows of [`Self::timestep_rows`] for 2B rows. The adaLN parameters of
    /// all steps are formed in one pass. A CUDA graph captures this with the full shapes, so
    /// that no op in it broadcasts.
    pub(crate) fn run_frame(
        &self,
        batch: &FrameBatch<'_>,
        guidance: &Tensor,
        temb: &Tensor,
        step_noise: &mut [&mut dyn NoiseSource],
        observe: &mut dyn FnMut(SamplerStep<'_>),
    ) -> Result<Tensor> {
        let b = batch.guidance.len();
        let device = self.head.device();
        let latent = self.head.latent_size();
        let conditions = Tensor::cat(&[batch.positive, batch.negative], 0)?;
        let cond_proj = self.head.condition(&conditions)?;
        let steps = self.solver.num_steps();
        let c = (Tensor::cat(&vec![&cond_proj; steps], 0)? + temb)?;
        let modulation = self.head.modulation(&c)?;
        let mut x = batch.noise.to_device(device)?.to_dtype(DType::F32)?;
        let mut frame = self.solver.begin_frame();
        for k in 0..steps {
            let rows = Tensor::cat(&[&x, &x], 0)?;
            let m = modulation.rows(k * 2 * b, 2 * b)?;
            let v = self.head.forward_modulated(&rows, &m)?;
            let (v_pos, v_neg) = (v.narrow(0, 0, b)?, v.narrow(0, b, b)?);
            let v_guided = (&v_neg + (&v_pos - &v_neg)?.broadcast_mul(guidance)?)?;
            let eps = match self.solver.kind() {
                SolverKind::Ode => None,
                SolverKind::Sde => Some(draw_rows(step_noise, latent, device)?),
            };
            x = frame.step(&v_guided, &x, eps.as_ref())?.sample;
            observe(SamplerStep {
                index: k,
                v_positive: &v_pos,
                v_negative: &v_neg,
                v_guided: &v_guided,
                sample: &x,
            });
        }
        Ok(x)
    }

    /// Checks the batch shapes; returns B.
    fn validate(&self, batch: &FrameBatch<'_>, sources: usize) -> Result<usize> {
        let (h, latent) = (self.head.hidden_size(), self.head.latent_size());
        let b = batch.guidance.len();
        let bad = |what: &str, t: &Tensor, want: (usize, usize)| {
            ModelError::InvalidInput(format!(
                "{what} has shape {:?}, expected {want:?}",
                t.dims()
            ))
        };
        if b == 0 {
            return Err(ModelError::InvalidInput("empty frame batch".into()));
        }
        for (what, t, want) in [
            ("positive condition", batch.positive, (b, h)),
            ("negative condition", batch.negative, (b, h)),
            ("initial noise", batch.noise, (b, latent)),
        ] {
            if t.dims() != [want.0, want.1] {
                return Err(bad(what, t, want));
            }
        }
        if self.solver.kind() == SolverKind::Sde && sources != b {
            return Err(ModelError::InvalidInput(format!(
                "the SDE solver needs one noise source per frame ({b}), got {sources}"
            )));
        }
        Ok(b)
    }
}

/// One fresh noise vector per row, `[B, latent]`.
fn draw_rows(
    sources: &mut [&mut dyn NoiseSource],
    latent: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut values = Vec::with_capacity(sources.len() * latent);
    for source in sources.iter_mut() {
        values.extend(source.next_vector(latent)?);
    }
    Ok(Tensor::from_vec(values, (sources.len(), latent), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_reproducible_and_standard() {
        let (mut a, mut b) = (GaussianNoise::new(7), GaussianNoise::new(7));
        let va = a.next_vector(4096).unwrap();
        assert_eq!(va, b.next_vector(4096).unwrap());
        assert_ne!(va, GaussianNoise::new(8).next_vector(4096).unwrap());
        let mean = va.iter().map(|&v| f64::from(v)).sum::<f64>() / 4096.0;
        let var = va
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 4096.0;
        // 4096 samples: mean within ~5 standard errors (0.078), variance within 0.15
        assert!(mean.abs() < 0.08, "mean {mean}");
        assert!((var - 1.0).abs() < 0.15, "variance {var}");
    }

    #[test]
    fn replay_returns_vectors_in_order_then_errors() {
        let mut r = ReplayNoise::new(vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(r.next_vector(2).unwrap(), vec![1.0, 2.0]);
        assert_eq!(r.remaining(), 1);
        assert!(r.next_vector(3).is_err());
        assert_eq!(r.next_vector(2).unwrap(), vec![3.0, 4.0]);
        assert!(r.next_vector(2).is_err());
    }
}
