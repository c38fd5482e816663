//! VibeVoice-Realtime-0.5B inference in candle: a pure model crate (no async runtime, no HTTP).
//!
//! Module layout mirrors the checkpoint: `config` deserialises `config.json`, each network
//! component has a `new(cfg, vb)` constructor whose `vb.pp(..)` paths follow tensor names.

pub mod acoustic_decoder;
pub mod config;
pub mod connector;
pub mod diffusion_head;
pub mod eos_classifier;
pub mod error;
pub mod generation;
pub mod graphs;
pub mod kv_cache;
pub mod language_model;
pub mod linear;
pub mod model;
pub mod parity;
pub mod placement;
pub mod quantize;
pub mod qwen2;
pub mod random_init;
pub mod rope;
mod rows;
pub mod sampler;
pub mod scheduler;
pub mod source;
pub mod text;

pub use config::VibeVoiceConfig;
pub use error::{ModelError, Result};
pub use model::VibeVoiceModel;
pub use quantize::Quantize;
