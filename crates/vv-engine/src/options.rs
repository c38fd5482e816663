//! Everything needed to load and run an engine (filled from the service settings).

use std::path::PathBuf;
use std::time::Duration;

use vv_device::{DTypeRequest, DeviceRequest};
use vv_model::scheduler::SolverKind;
use vv_model::Quantize;

pub use crate::capacity::SlotPolicy;

/// Engine construction options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Hub id or local checkpoint directory.
    pub model: String,
    /// Build the real architecture with random weights instead of loading `model` (for
    /// capacity measurements without the checkpoint: the audio is noise, EOS never fires).
    pub random_weights: bool,
    /// Hub revision of the model.
    pub model_revision: Option<String>,
    /// Tokenizer hub id, directory or `tokenizer.json` path.
    pub tokenizer: String,
    /// Hugging Face cache directory override.
    pub cache_dir: Option<PathBuf>,
    /// Directory of voice presets (`.pt` or flat `.safetensors`).
    pub voices_dir: Option<PathBuf>,
    /// Voice used when a request names none (first installed voice when unset).
    pub default_voice: Option<String>,
    /// Device request.
    pub device: DeviceRequest,
    /// Dtype request.
    pub dtype: DTypeRequest,
    /// Weight quantization request (CPU with f32 compute only; `auto`: int8 where the CPU
    /// kernels are SIMD kernels, none elsewhere).
    pub quantize: Quantize,
    /// Concurrent utterances: fixed, or as many as run in real time.
    pub slots: SlotPolicy,
    /// Unread audio frames per utterance before `slow_consumer`.
    pub max_buffered_frames: usize,
    /// Safety cap on speech frames per text token.
    pub max_frames_per_token: usize,
    /// Run a warmup generation before serving.
    pub warmup: bool,
    /// Replay each frame's work as CUDA graphs (no effect off CUDA).
    pub cuda_graphs: bool,
    /// Capture the CUDA graphs of every batch-size bucket up to the slot limit during warm-up
    /// (otherwise each is captured at its first use).
    pub cuda_graph_warmup: bool,
    /// Default diffusion steps.
    pub diffusion_steps: usize,
    /// Default guidance scale.
    pub cfg_scale: f64,
    /// Default solver.
    pub solver: SolverKind,
    /// Show download progress bars.
    pub progress: bool,
    /// A model thread whose heartbeat is older than this is reported stalled.
    pub stall_timeout: Duration,
    /// An utterance waiting this long for text is ended with `text_wait_timeout`.
    pub text_wait_timeout: Duration,
    /// Commands the model thread handles at most between two rounds (frames keep flowing
    /// however many arrive).
    pub commands_per_round: usize,
}
