//! End-of-speech classifier (`tts_eos_classifier`, top level): a logit on the TTS-LM hidden state.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::linear::{Linear, Packing};

use crate::config::VibeVoiceConfig;
use crate::error::Result;
use crate::qwen2::linear;

/// `fc2(ReLU(fc1(h)))`; generation stops when `sigmoid(logit) > 0.5`, i.e. `logit > 0`.
#[derive(Debug, Clone)]
pub struct EosClassifier {
    fc1: Linear,
    fc2: Linear,
    device: Device,
    dtype: DType,
}

impl EosClassifier {
    /// Reads `fc1` (`[hidden, hidden]`) and `fc2` (`[1, hidden]`), both with bias, under `vb`
    /// (`tts_eos_classifier`), stored as `packing.sensitive()` says (bf16 under int8).
    pub fn new(cfg: &VibeVoiceConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let hidden = cfg.decoder_config.hidden_size;
        let packing = packing.sensitive();
        Ok(Self {
            fc1: linear(&vb.pp("fc1"), hidden, hidden, true, packing)?,
            fc2: linear(&vb.pp("fc2"), hidden, 1, true, packing)?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `ReLU(fc1(h))`, `[.., hidden]`; `h` is cast to the weights' dtype.
    pub fn hidden(&self, h: &Tensor) -> Result<Tensor> {
        let h = h.to_dtype(self.dtype)?;
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
