//! The service settings: one struct holding every configurable value, and its defaults.

use super::api_keys::ApiKeys;
use super::location::ResourceLocation;
use super::origins::AllowedOrigins;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use vv_device::{DTypeRequest, DeviceRequest};
use vv_model::Quantize;

/// Default model: the Hugging Face id of VibeVoice-Realtime-0.5B.
pub const DEFAULT_MODEL: &str = "microsoft/VibeVoice-Realtime-0.5B";
/// Default tokenizer: the Hugging Face id of the Qwen2.5 tokenizer the model was trained with.
pub const DEFAULT_TOKENIZER: &str = "Qwen/Qwen2.5-0.5B";

/// Everything the service can be configured with (flags, `TTS_*` variables, TOML file).
///
/// `Debug` and `Serialize` never show the API keys in clear.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Requested inference device; resolved against the hardware by the device layer.
    pub device: DeviceRequest,
    /// Requested compute dtype; the device layer's policy decides what is used.
    pub dtype: DTypeRequest,
    /// Weight quantization of the large matrices on the CPU (f32 compute only): `auto` is int8
    /// where the CPU kernels are SIMD kernels and none elsewhere.
    pub quantize: Quantize,
    /// Hugging Face model id or local model directory.
    pub model: String,
    /// Revision (branch, tag or commit) of a Hugging Face model.
    pub model_revision: String,
    /// Hugging Face tokenizer id, or a path to a `tokenizer.json` (or a directory holding one).
    pub tokenizer: String,
    /// Override of the Hugging Face cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Directory of voice presets.
    pub voices_dir: Option<PathBuf>,
    /// Voice used when a request names none.
    pub default_voice: Option<String>,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// Diffusion steps per speech frame (1..=100).
    pub diffusion_steps: usize,
    /// Classifier-free guidance scale (> 0 and <= 10).
    pub cfg_scale: f32,
    /// Diffusion solver.
    pub solver: Solver,
    /// Fixed sampler seed (random per utterance when absent).
    pub seed: Option<u64>,
    /// Run a warm-up utterance before reporting ready.
    pub warmup: bool,
    /// Replay each frame's work as CUDA graphs (CUDA builds on a CUDA device only).
    pub cuda_graphs: bool,
    /// Capture the CUDA graphs of every batch-size bucket during warm-up (else at first use).
    pub cuda_graph_warmup: bool,
    /// With automatic slots: the fraction of the real-time budget (one frame of audio per
    /// round) a round may take at the batch size admission allows (0 < h <= 1).
    pub capacity_headroom: f64,
    /// Serve the real architecture with random weights instead of loading the model (capacity
    /// measurements without the checkpoint; the audio is noise).
    pub random_weights: bool,
    /// Resource limits.
    #[serde(flatten)]
    pub limits: Limits,
    /// Accepted API keys; empty means no authentication.
    pub api_keys: ApiKeys,
    /// Keys that (besides `api_keys`) open `/metrics`; empty leaves `/metrics` public.
    pub metrics_api_keys: ApiKeys,
    /// Origins allowed besides the server's own (WebSocket upgrades, CORS).
    pub allowed_origins: AllowedOrigins,
    /// Log line format.
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint the utterance spans are exported to (none: no export).
    pub otlp_endpoint: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            device: DeviceRequest::Auto,
            dtype: DTypeRequest::Auto,
            quantize: Quantize::Auto,
            model: DEFAULT_MODEL.to_string(),
            model_revision: "main".to_string(),
            tokenizer: DEFAULT_TOKENIZER.to_string(),
            cache_dir: None,
            voices_dir: None,
            default_voice: None,
            host: "127.0.0.1".to_string(),
            port: 8000,
            diffusion_steps: 5,
            cfg_scale: 1.5,
            solver: Solver::Ode,
            seed: None,
            warmup: true,
            cuda_graphs: true,
            cuda_graph_warmup: true,
            capacity_headroom: 0.7,
            random_weights: false,
            limits: Limits::default(),
            api_keys: ApiKeys::default(),
            metrics_api_keys: ApiKeys::default(),
            allowed_origins: AllowedOrigins::default(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl Settings {
    /// Where the model comes from (Hugging Face or a local directory).
    pub fn model_location(&self) -> ResourceLocation {
        ResourceLocation::classify(&self.model)
    }

    /// Where the tokenizer comes from (Hugging Face or a local file).
    pub fn tokenizer_location(&self) -> ResourceLocation {
        ResourceLocation::classify(&self.tokenizer)
    }
}

/// Limits that protect the service from overload and misbehaving clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Utterances synthesised concurrently: as many as the device runs in real time, or a
    /// fixed number (>= 1).
    pub max_slots: MaxSlots,
    /// Characters of text per utterance (>= 1).
    pub max_text_chars: usize,
    /// Bytes per inbound WebSocket message (>= 256).
    pub max_message_bytes: usize,
    /// Safety cap on speech frames generated per text token (>= 1).
    pub max_frames_per_token: usize,
    /// Seconds a WebSocket session may stay silent before it is closed (>= 1).
    pub session_idle_timeout_secs: u64,
    /// Seconds a context may wait for text before it is closed (>= 1).
    pub context_idle_timeout_secs: u64,
    /// Contexts one WebSocket session may have open at once (>= 1).
    pub max_contexts_per_session: usize,
    /// Percentage of the engine's slots one WebSocket session may hold (1..=100; at least one
    /// slot).
    pub max_session_slot_percent: usize,
    /// Diffusion steps a request may ask for (1..=100).
    pub max_diffusion_steps: usize,
    /// Outbound frames buffered per context before `slow_consumer` (>= 1).
    pub max_buffered_frames: usize,
    /// Seconds in-flight work may take to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a connection may take to send a request's head (from accept or its first
    /// byte) and then its body (>= 1).
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request (>= 1).
    pub keepalive_idle_timeout_secs: u64,
    /// Seconds a write to a client (HTTP body, WebSocket message) may stay blocked (>= 1).
    pub write_timeout_secs: u64,
    /// Open client connections in all, WebSockets included (>= 1).
    pub max_connections: usize,
    /// Open client connections per client IP address (>= 1).
    pub max_connections_per_ip: usize,
    /// Seconds without a model-thread heartbeat before the engine counts as stuck (>= 1).
    pub engine_stall_timeout_secs: u64,
    /// Seconds an utterance waiting for text keeps its slot before the engine ends it (>= 1).
    pub text_wait_timeout_secs: u64,
    /// Commands the model thread handles at most between two rounds (>= 1).
    pub engine_commands_per_round: usize,
    /// How long a WebSocket session may leave client messages unread while a context's first
    /// audio is being made from text the engine already has.
    pub first_audio_hold_ms: FirstAudioHold,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_slots: MaxSlots::Auto,
            max_text_chars: 5000,
            max_message_bytes: 65536,
            max_frames_per_token: 10,
            session_idle_timeout_secs: 60,
            context_idle_timeout_secs: 30,
            max_contexts_per_session: 4,
            max_session_slot_percent: 50,
            max_diffusion_steps: 100,
            max_buffered_frames: 64,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 10,
            keepalive_idle_timeout_secs: 60,
            write_timeout_secs: 15,
            max_connections: 1024,
            max_connections_per_ip: 256,
            engine_stall_timeout_secs: 30,
            text_wait_timeout_secs: 30,
            // The whole queue: a burst of new streams all start in the next round.
            engine_commands_per_round: vv_engine::COMMAND_QUEUE,
            first_audio_hold_ms: FirstAudioHold::Auto,
        }
    }
}

/// `Display` (`auto` or the number) and `Serialize` (the string `"auto"` or the number) of a
/// setting that is `Auto` or a `$number` variant holding an unsigned integer.
macro_rules! auto_or_number {
    ($setting:ident, $number:ident) => {
        impl fmt::Display for $setting {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::Auto => f.write_str("auto"),
                    Self::$number(n) => write!(f, "{n}"),
                }
            }
        }

        impl Serialize for $setting {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    Self::Auto => serializer.serialize_str("auto"),
                    Self::$number(n) => serializer.serialize_u64(*n as u64),
                }
            }
        }
    };
}

/// How long a WebSocket session may hold back reading client messages while a context's
/// first audio is on its way (see `ws::session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstAudioHold {
    /// [`FirstAudioHold::CPU_MS`] when the model runs on the CPU, where reading and
    /// tokenizing text compete with it for the same cores; off on GPUs.
    Auto,
    /// At most this many milliseconds (0: never hold).
    Millis(u64),
}

impl FirstAudioHold {
    /// The hold `auto` gives on the CPU: above the real model's first audio there (about
    /// 100-200 ms on two cores), below the smallest session idle timeout (1 s).
    pub const CPU_MS: u64 = 250;
    /// The largest hold a setting may ask for.
    pub const MAX_MS: u64 = 1000;

    /// The hold for a model on the CPU (`on_cpu`) or on a GPU.
    pub fn resolve(self, on_cpu: bool) -> std::time::Duration {
        let ms = match self {
            Self::Auto if on_cpu => Self::CPU_MS,
            Self::Auto => 0,
            Self::Millis(ms) => ms.min(Self::MAX_MS),
        };
        std::time::Duration::from_millis(ms)
    }
}

auto_or_number!(FirstAudioHold, Millis);

/// How many utterances are synthesised concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSlots {
    /// As many as the device advances in real time (measured; see `capacity_headroom`).
    Auto,
    /// A fixed number.
    Fixed(usize),
}

auto_or_number!(MaxSlots, Fixed);

/// A setting with a fixed set of named values.
pub trait Choice: Copy + 'static {
    /// Every value, in the order they are listed in messages.
    const ALL: &'static [Self];
    /// The value's configuration name.
    fn as_str(self) -> &'static str;
}

/// Diffusion solver of the speech head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Deterministic DPM-Solver++ (the reference setting).
    #[default]
    Ode,
    /// Stochastic DPM-Solver++ (SDE variant).
    Sde,
}

impl Choice for Solver {
    const ALL: &'static [Self] = &[Self::Ode, Self::Sde];
    fn as_str(self) -> &'static str {
        match self {
            Self::Ode => "ode",
            Self::Sde => "sde",
        }
    }
}

/// Format of log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Choice for LogFormat {
    const ALL: &'static [Self] = &[Self::Text, Self::Json];
    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl Choice for Quantize {
    const ALL: &'static [Self] = Quantize::ALL;
    fn as_str(self) -> &'static str {
        Quantize::as_str(self)
    }
}

impl fmt::Display for Solver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
