//! Where each component runs. Normally every component sits on the chosen device; when a GPU
//! backend lacks an operation a component needs, that component alone falls back to the CPU
//! (one warning, through the device layer's `FallbackNotice`) and tensors cross devices at the
//! component's boundary.

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::Result;

/// The model's components, as far as placement is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Lower (text) LM.
    TextLm,
    /// Upper (TTS) LM.
    TtsLm,
    /// Acoustic connector.
    Connector,
    /// End-of-speech classifier.
    EosClassifier,
    /// Diffusion prediction head.
    DiffusionHead,
    /// σ-VAE decoder.
    AcousticDecoder,
}

impl Component {
    /// Every component, in pipeline order.
    pub const ALL: [Component; 6] = [
        Component::TextLm,
        Component::TtsLm,
        Component::Connector,
        Component::EosClassifier,
        Component::DiffusionHead,
        Component::AcousticDecoder,
    ];

    /// Stable snake_case name (logs, metrics, info).
    pub fn name(self) -> &'static str {
        match self {
            Component::TextLm => "text_lm",
            Component::TtsLm => "tts_lm",
            Component::Connector => "connector",
            Component::EosClassifier => "eos_classifier",
            Component::DiffusionHead => "diffusion_head",
            Component::AcousticDecoder => "acoustic_decoder",
        }
    }
}

/// A device and a compute dtype.
#[derive(Debug, Clone)]
pub struct Place {
    /// Device of the component's weights.
    pub device: Device,
    /// Dtype its inputs are cast to.
    pub dtype: DType,
}

impl Place {
    /// `t` moved to this device and cast to this dtype (no copy when already there).
    pub fn put(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.to_device(&self.device)?.to_dtype(self.dtype)?)
    }
}
