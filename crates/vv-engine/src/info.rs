//! What a running engine serves: model, device and dtype with reasons, voices, limits, build.

use serde::Serialize;
use vv_device::info::ModelInfo;

use crate::capacity::SlotPolicy;
use crate::error::EngineError;

/// The model as loaded.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// Hub id or local directory it was loaded from (or the random-weights notice).
    pub source: String,
    /// Random weights of the real shapes: the audio is noise, EOS is off.
    pub random_weights: bool,
    /// Native output sample rate (24 kHz).
    pub sample_rate: u32,
    /// Samples per decoded frame (3200 for the real model).
    pub frame_samples: usize,
    /// Text tokens per window (5).
    pub text_window: usize,
    /// Frames per text window (6).
    pub speech_window: usize,
    /// Largest number of TTS-LM positions (8192).
    pub max_positions: usize,
    /// Seconds spent loading weights, tokenizer and voices.
    pub load_seconds: f64,
    /// Seconds spent in the warmup generation (`None` when warmup was skipped).
    pub warmup_seconds: Option<f64>,
    /// Components running on the CPU because the device's backend lacks an operation they
    /// need (empty when every component runs on the chosen device).
    pub cpu_fallbacks: Vec<&'static str>,
    /// The weight quantization request in force (`auto`, `none`, `bf16`, `int8`).
    pub quantize_request: vv_model::Quantize,
    /// The format the large matrices were packed in at load: `none`, `bf16` or `int8`.
    pub quantize: &'static str,
    /// Why that format.
    pub quantize_reason: String,
}

/// Static facts about the running engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    /// The model.
    pub model: ModelSummary,
    /// Device and dtype, each with the reason it was chosen.
    pub device: ModelInfo,
    /// Installed voices, sorted.
    pub voices: Vec<String>,
    /// Voice used when a request names none.
    pub default_voice: String,
    /// How concurrent utterances are admitted.
    pub slots: SlotPolicy,
    /// Crate version.
    pub version: &'static str,
}

impl EngineInfo {
    /// Maps a requested voice (or none) to an installed voice name.
    pub fn resolve_voice(&self, requested: Option<&str>) -> Result<String, EngineError> {
        match requested.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(self.default_voice.clone()),
            Some(name) => self
                .voices
                .iter()
                .find(|v| v.as_str() == name)
                .cloned()
                .ok_or_else(|| EngineError::UnknownVoice(name.to_string())),
        }
    }
}
