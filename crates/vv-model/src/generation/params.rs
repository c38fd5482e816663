//! Generation settings and the loop's fixed window sizes.

use crate::scheduler::SolverKind;

/// Text tokens consumed per window (`TTS_TEXT_WINDOW_SIZE`).
pub const TEXT_WINDOW: usize = 5;
/// Speech frames produced per window (`TTS_SPEECH_WINDOW_SIZE`).
pub const SPEECH_WINDOW: usize = 6;

/// How one utterance is generated.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    /// Classifier-free guidance scale (1.5 in the demos).
    pub cfg_scale: f32,
    /// DPM-Solver++ steps per frame (5 in the demos).
    pub diffusion_steps: usize,
    /// Deterministic (file demo) or stochastic (web demo) solver.
    pub solver: SolverKind,
    /// Stop on the end-of-speech classifier (benchmarks switch it off for fixed lengths).
    pub eos_enabled: bool,
    /// Safety cap, a documented deviation from the reference (which only stops at EOS or
    /// 8192 positions): once all text is consumed, stop after this many frames per text token.
    pub max_frames_per_token: usize,
    /// Hard cap on frames whatever the text (benchmarks use it for fixed lengths).
    pub max_frames: Option<usize>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            cfg_scale: 1.5,
            diffusion_steps: 5,
            solver: SolverKind::Ode,
            eos_enabled: true,
            max_frames_per_token: 10,
            max_frames: None,
        }
    }
}
