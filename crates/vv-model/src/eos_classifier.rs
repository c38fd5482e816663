//! End-of-speech classifier (`tts_eos_classifier`, top level): a logit on the TTS-LM hidden state.

use candle_core::{Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::linear::Linear;

use crate::config::VibeVoiceConfig;
use crate::error::Result;
use crate::qwen2::linear;

/// `fc2(ReLU(fc1(h)))`; generation stops when `sigmoid(logit) > 0.5`, i.e. `logit > 0`.
#[derive(Debug, Clone)]
pub struct EosClassifier {
    fc1: Linear,
    fc2: Linear,
}

impl EosClassifier {
    /// Reads `fc1` (`[hidden, hidden]`) and `fc2` (`[1, hidden]`), both with bias, under `vb`
    /// (`tts_eos_classifier`).
    pub fn new(cfg: &VibeVoiceConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.decoder_config.hidden_size;
        Ok(Self {
            fc1: linear(&vb.pp("fc1"), hidden, hidden, true)?,
            fc2: linear(&vb.pp("fc2"), hidden, 1, true)?,
        })
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        self.fc1.weight().device()
    }

    /// `ReLU(fc1(h))`, `[.., hidden]`; `h` is cast to the weights' dtype.
    pub fn hidden(&self, h: &Tensor) -> Result<Tensor> {
        let h = h.to_dtype(self.fc1.weight().dtype())?;
        Ok(self.fc1.forward(&h)?.relu()?)
    }

    /// The logit `[.., 1]` of the normed TTS-LM hidden state `h` `[.., hidden]`.
    pub fn logit(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self.fc2.forward(&self.hidden(h)?)?)
    }

    /// The EOS probability `sigmoid(logit)`, `[.., 1]`.
    pub fn prob(&self, h: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.logit(h)?)?)
    }
}
