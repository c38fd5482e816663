//! Per-utterance synthesis parameters as requested by a client, and their validation.

use serde::Serialize;
use vv_model::scheduler::SolverKind;

use crate::error::EngineError;

/// Smallest and largest accepted number of diffusion steps.
pub const STEPS_RANGE: (usize, usize) = (1, 100);
/// Accepted classifier-free guidance range (exclusive lower bound, inclusive upper bound).
pub const CFG_RANGE: (f64, f64) = (0.0, 10.0);

/// What one utterance is synthesised with.
#[derive(Debug, Clone, Serialize)]
pub struct SynthesisParams {
    /// Installed voice name; the default voice when `None`.
    pub voice: Option<String>,
    /// Classifier-free guidance scale.
    pub cfg_scale: f64,
    /// DPM-Solver++ steps per frame.
    pub diffusion_steps: usize,
    /// Deterministic or stochastic solver.
    #[serde(skip)]
    pub solver: SolverKind,
    /// Noise seed; random when `None`.
    pub seed: Option<u64>,
}

impl SynthesisParams {
    /// Checks ranges; returns a typed error naming the field.
    pub fn validate(&self) -> Result<(), EngineError> {
        if !(STEPS_RANGE.0..=STEPS_RANGE.1).contains(&self.diffusion_steps) {
            return Err(EngineError::InvalidRequest(format!(
                "diffusion_steps must be between {} and {}, got {}",
                STEPS_RANGE.0, STEPS_RANGE.1, self.diffusion_steps
            )));
        }
        if !(self.cfg_scale.is_finite()
            && self.cfg_scale > CFG_RANGE.0
            && self.cfg_scale <= CFG_RANGE.1)
        {
            return Err(EngineError::InvalidRequest(format!(
                "cfg_scale must be > {} and <= {}, got {}",
                CFG_RANGE.0, CFG_RANGE.1, self.cfg_scale
            )));
        }
        Ok(())
    }
}
