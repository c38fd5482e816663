//! Acoustic connector (`model.acoustic_connector`): projects a raw speech latent to the LM width.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::linear::{Linear, Packing};

use crate::config::VibeVoiceConfig;
use crate::error::Result;
use crate::qwen2::{linear, RmsNorm};

/// `fc2(RMSNorm(fc1(z)))`, no activation; the input is the raw diffusion output `z`
/// (before de-normalisation).
#[derive(Debug, Clone)]
pub struct AcousticConnector {
    fc1: Linear,
    norm: RmsNorm,
    fc2: Linear,
    device: Device,
    dtype: DType,
}

/// The connector's intermediates, for parity checks.
#[derive(Debug, Clone)]
pub struct ConnectorTrace {
    /// `fc1(z)`.
    pub fc1: Tensor,
    /// `RMSNorm(fc1(z))`.
    pub norm: Tensor,
    /// The output `fc2(norm)`.
    pub embeds: Tensor,
}

impl AcousticConnector {
    /// Reads `fc1`, `norm` and `fc2` under `vb` (`model.acoustic_connector`); the norm uses the
    /// decoder's `rms_norm_eps`; the projections are stored as `packing.sensitive()` says (bf16
    /// under int8).
    pub fn new(cfg: &VibeVoiceConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let (latent, hidden) = (cfg.acoustic_vae_dim, cfg.decoder_config.hidden_size);
        let packing = packing.sensitive();
        Ok(Self {
            fc1: linear(&vb.pp("fc1"), latent, hidden, true, packing)?,
            norm: RmsNorm::new(hidden, cfg.decoder_config.rms_norm_eps, vb.pp("norm"))?,
            fc2: linear(&vb.pp("fc2"), hidden, hidden, true, packing)?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `[.., latent]` -> `[.., hidden]`; the input is cast to the weights' dtype.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.trace(z)?.embeds)
    }

    /// Like [`AcousticConnector::forward`], keeping the intermediates.
    pub fn trace(&self, z: &Tensor) -> Result<ConnectorTrace> {
        let z = z.to_dtype(self.dtype)?;
        let fc1 = self.fc1.forward(&z)?;
        let norm = self.norm.forward(&fc1)?;
        let embeds = self.fc2.forward(&norm)?;
        Ok(ConnectorTrace { fc1, norm, embeds })
    }
}
