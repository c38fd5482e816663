//! `config.json` of a VibeVoice-Realtime checkpoint, deserialised directly, plus derived sizes.

use serde::Deserialize;
use std::path::Path;

use crate::error::{ModelError, Result};

/// Top level of the checkpoint's `config.json` (`model_type = vibevoice_streaming`).
#[derive(Debug, Clone, Deserialize)]
pub struct VibeVoiceConfig {
    pub acoustic_vae_dim: usize,
    pub tts_backbone_num_hidden_layers: usize,
    pub decoder_config: Qwen2Config,
    pub diffusion_head_config: DiffusionHeadConfig,
    pub acoustic_tokenizer_config: AcousticTokenizerConfig,
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

/// The Qwen2 backbone shared by the lower LM and the TTS LM.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen2Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
}

impl Qwen2Config {
    /// Per-head width: explicit `head_dim` or `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Query heads per KV head (GQA group size).
    pub fn gqa_group(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads.max(1)
    }
}

/// The diffusion prediction head and its noise schedule.
#[derive(Debug, Clone, Deserialize)]
pub struct DiffusionHeadConfig {
    pub hidden_size: usize,
    pub head_layers: usize,
    pub head_ffn_ratio: f64,
    pub rms_norm_eps: f64,
    pub latent_size: usize,
    #[serde(default = "default_train_steps")]
    pub ddpm_num_steps: usize,
    #[serde(default = "default_inference_steps")]
    pub ddpm_num_inference_steps: usize,
    #[serde(default = "default_beta_schedule")]
    pub ddpm_beta_schedule: String,
    #[serde(default = "default_prediction_type")]
    pub prediction_type: String,
}

impl DiffusionHeadConfig {
    /// SwiGLU width of the head's FFN: `int(hidden_size * head_ffn_ratio)`.
    pub fn ffn_dim(&self) -> usize {
        (self.hidden_size as f64 * self.head_ffn_ratio) as usize
    }
}

fn default_train_steps() -> usize {
    1000
}
fn default_inference_steps() -> usize {
    20
}
fn default_beta_schedule() -> String {
    "cosine".into()
}
fn default_prediction_type() -> String {
    "v_prediction".into()
}

/// `decoder_depths` may be null, a list, or a "3-3-8" string in the reference configs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Depths {
    List(Vec<usize>),
    Text(String),
}

impl Depths {
    fn parse(&self) -> Result<Vec<usize>> {
        match self {
            Depths::List(v) => Ok(v.clone()),
            Depths::Text(s) => s
                .split('-')
                .map(|p| {
                    p.trim()
                        .parse::<usize>()
                        .map_err(|_| ModelError::InvalidConfig(format!("bad depth list {s:?}")))
                })
                .collect(),
        }
    }
}

/// The sigma-VAE acoustic tokenizer; only its decoder is used at inference.
#[derive(Debug, Clone, Deserialize)]
pub struct AcousticTokenizerConfig {
    pub vae_dim: usize,
    #[serde(default = "default_channels")]
    pub channels: usize,
    pub decoder_n_filters: usize,
    pub decoder_ratios: Vec<usize>,
    #[serde(default)]
    pub decoder_depths: Option<Depths>,
    pub encoder_depths: Depths,
    #[serde(default = "default_vae_eps")]
    pub layernorm_eps: f64,
}

fn default_channels() -> usize {
    1
}
fn default_vae_eps() -> f64 {
    1e-5
}

impl AcousticTokenizerConfig {
    /// Block1D counts per decoder stage: `decoder_depths`, or the reversed encoder depths.
    pub fn decoder_depths(&self) -> Result<Vec<usize>> {
        match &self.decoder_depths {
            Some(d) => d.parse(),
            None => {
                let mut d = self.encoder_depths.parse()?;
                d.reverse();
                Ok(d)
            }
        }
    }

    /// Channel width of each decoder stage: `n_filters * 2^(n_stages - 1 - i)`.
    pub fn decoder_channels(&self) -> Result<Vec<usize>> {
        let n = self.decoder_depths()?.len();
        Ok((0..n)
            .map(|i| self.decoder_n_filters << (n - 1 - i))
            .collect())
    }

    /// Samples produced per latent frame (product of the upsampling ratios).
    pub fn hop_length(&self) -> usize {
        self.decoder_ratios.iter().product()
    }
}

impl VibeVoiceConfig {
    /// Reads and validates `config.json` (unknown keys such as `_fixture_notes` are ignored).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            ModelError::InvalidConfig(msg) => {
                ModelError::InvalidConfig(format!("{}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// Parses and validates a config from JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self =
            serde_json::from_str(text).map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration of `microsoft/VibeVoice-Realtime-0.5B` (reconstructed and checked
    /// against the published parameter count; see testdata/FIXTURES.md), for building the real
    /// architecture without downloading it (benchmarks with random weights).
    pub fn realtime_0_5b() -> Self {
        Self::from_json(include_str!("realtime_0_5b_config.json"))
            .unwrap_or_else(|e| unreachable!("the built-in config is valid: {e}"))
    }

    /// Number of layers of the lower (text-only) LM.
    pub fn lower_layers(&self) -> usize {
        self.decoder_config.num_hidden_layers - self.tts_backbone_num_hidden_layers
    }

    /// What a voice preset must match in this model.
    pub fn preset_shape(&self) -> vv_preset::ModelShape {
        let d = &self.decoder_config;
        vv_preset::ModelShape {
            lower_layers: self.lower_layers(),
            tts_layers: self.tts_backbone_num_hidden_layers,
            kv_heads: d.num_key_value_heads,
            head_dim: d.head_dim(),
            hidden_size: d.hidden_size,
        }
    }

    /// Checks the relations the model code relies on.
    pub fn validate(&self) -> Result<()> {
        let d = &self.decoder_config;
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        if d.num_attention_heads == 0 || d.num_key_value_heads == 0 {
            return bad("attention head counts must be positive".into());
        }
        if !d.num_attention_heads.is_multiple_of(d.num_key_value_heads) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                d.num_attention_heads, d.num_key_value_heads
            ));
        }
        if d.head_dim.is_none() && !d.hidden_size.is_multiple_of(d.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                d.hidden_size, d.num_attention_heads
            ));
        }
        if !d.head_dim().is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", d.head_dim()));
        }
        if self.tts_backbone_num_hidden_layers > d.num_hidden_layers {
            return bad(format!(
                "tts_backbone_num_hidden_layers {} exceeds num_hidden_layers {}",
                self.tts_backbone_num_hidden_layers, d.num_hidden_layers
            ));
        }
        let a = &self.acoustic_tokenizer_config;
        let depths = a.decoder_depths()?;
        if depths.len() != a.decoder_ratios.len() + 1 {
            return bad(format!(
                "decoder has {} stages but {} upsampling ratios (expected stages = ratios + 1)",
                depths.len(),
                a.decoder_ratios.len()
            ));
        }
        if a.decoder_ratios.contains(&0) {
            return bad("decoder_ratios must be positive".into());
        }
        if a.vae_dim != self.acoustic_vae_dim
            || self.diffusion_head_config.latent_size != self.acoustic_vae_dim
        {
            return bad(format!(
                "latent sizes disagree: acoustic_vae_dim {}, vae_dim {}, latent_size {}",
                self.acoustic_vae_dim, a.vae_dim, self.diffusion_head_config.latent_size
            ));
        }
        if self.diffusion_head_config.hidden_size != d.hidden_size {
            return bad(format!(
                "diffusion head hidden_size {} differs from the LM hidden_size {}",
                self.diffusion_head_config.hidden_size, d.hidden_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rel: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../../testdata/{rel}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn real_config_derives_the_published_shapes() {
        let c = VibeVoiceConfig::from_json(&read("real-config.json")).unwrap();
        assert_eq!(c.lower_layers(), 4);
        assert_eq!(c.decoder_config.head_dim(), 64);
        assert_eq!(c.decoder_config.gqa_group(), 7);
        assert_eq!(c.diffusion_head_config.ffn_dim(), 2688);
        let a = &c.acoustic_tokenizer_config;
        assert_eq!(a.decoder_depths().unwrap(), vec![8, 3, 3, 3, 3, 3, 3]);
        assert_eq!(
            a.decoder_channels().unwrap(),
            vec![2048, 1024, 512, 256, 128, 64, 32]
        );
        assert_eq!(a.hop_length(), 3200);
    }

    #[test]
    fn built_in_real_config_equals_the_fixture() {
        let built_in = VibeVoiceConfig::realtime_0_5b();
        let fixture = VibeVoiceConfig::from_json(&read("real-config.json")).unwrap();
        assert_eq!(format!("{built_in:?}"), format!("{fixture:?}"));
    }

    #[test]
    fn tiny_config_derives_its_shapes() {
        let c = VibeVoiceConfig::from_json(&read("vibevoice-tiny/model/config.json")).unwrap();
        assert_eq!(c.lower_layers(), 2);
        assert_eq!(c.decoder_config.head_dim(), 16);
        let a = &c.acoustic_tokenizer_config;
        assert_eq!(a.decoder_depths().unwrap(), vec![2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(
            a.decoder_channels().unwrap(),
            vec![128, 64, 32, 16, 8, 4, 2]
        );
    }

    #[test]
    fn inconsistent_heads_are_rejected() {
        let mut v: serde_json::Value =
            serde_json::from_str(&read("vibevoice-tiny/model/config.json")).unwrap();
        v["decoder_config"]["num_key_value_heads"] = 3.into();
        let err = VibeVoiceConfig::from_json(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
    }
}
