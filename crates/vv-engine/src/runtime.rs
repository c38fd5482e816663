//! Loading everything an engine needs: device resolution and dtype policy, checkpoint (hub id or
//! directory), tokenizer (warmed up), and voices (prepared on the device).
//! `vibevoice-rt say` uses a [`Runtime`] directly; `serve` hands it to the model thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use tracing::{info, warn};
use vv_device::dtype::select_dtype;
use vv_device::info::ModelInfo;
use vv_device::probe::DeviceProbe;
use vv_device::resolve::resolve_device;
use vv_model::generation::PreparedVoice;
use vv_model::source::{resolve_checkpoint, resolve_tokenizer, HubOptions};
use vv_model::text::{IncrementalTokenizer, TextTokenizer};
use vv_model::{VibeVoiceConfig, VibeVoiceModel};
use vv_preset::{VoiceLibrary, VoicePreset};

use crate::info::{EngineInfo, ModelSummary};
use crate::options::EngineOptions;

/// What `/api/info` names as the model's source with `random_weights`.
pub const RANDOM_WEIGHTS_SOURCE: &str = "random weights (real 0.5B shapes)";

/// Voices directory used when none is configured and it exists (the repository ships one).
pub const DEFAULT_VOICES_DIR: &str = "voices";

/// Why an engine could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The device request cannot be honoured.
    #[error(transparent)]
    Device(#[from] vv_device::error::DeviceError),
    /// Model, tokenizer or voice files are missing or broken.
    #[error(transparent)]
    Model(#[from] vv_model::ModelError),
    /// No usable voice preset was found.
    #[error("no voice presets: {0}")]
    NoVoices(String),
}

impl LoadError {
    /// Stable snake_case label.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::Device(e) => e.code(),
            LoadError::Model(e) => e.code(),
            LoadError::NoVoices(_) => "no_voices",
        }
    }
}

/// A loaded model with its tokenizer and prepared voices.
pub struct Runtime {
    pub(crate) model: VibeVoiceModel,
    pub(crate) tokenizer: Arc<TextTokenizer>,
    pub(crate) voices: BTreeMap<String, PreparedVoice>,
    pub(crate) info: EngineInfo,
    pub(crate) device: Device,
}

fn voices_dir(opts: &EngineOptions) -> Result<PathBuf, LoadError> {
    match &opts.voices_dir {
        Some(dir) => Ok(dir.clone()),
        None if Path::new(DEFAULT_VOICES_DIR).is_dir() => Ok(PathBuf::from(DEFAULT_VOICES_DIR)),
        None => Err(LoadError::NoVoices(format!(
            "set --voices-dir (TTS_VOICES_DIR) to a directory of .pt or .safetensors presets \
             (no ./{DEFAULT_VOICES_DIR} directory here)"
        ))),
    }
}

/// Loads and prepares every readable preset of the voices directory (broken ones are skipped
/// with a warning naming the file).
fn load_voices(
    model: &VibeVoiceModel,
    opts: &EngineOptions,
) -> Result<BTreeMap<String, PreparedVoice>, LoadError> {
    let dir = voices_dir(opts)?;
    let library = VoiceLibrary::scan(&dir).map_err(vv_model::ModelError::from)?;
    let mut voices = BTreeMap::new();
    for name in library.names() {
        let prepared = library
            .path(name)
            .and_then(VoicePreset::load)
            .map_err(vv_model::ModelError::from)
            .and_then(|preset| PreparedVoice::new(model, &preset));
        match prepared {
            Ok(v) => {
                voices.insert(name.to_string(), v);
            }
            Err(e) => warn!(voice = name, error = %e, "skipping voice preset"),
        }
    }
    if voices.is_empty() {
        return Err(LoadError::NoVoices(format!(
            "{} holds no preset usable with this model",
            dir.display()
        )));
    }
    info!(count = voices.len(), dir = %dir.display(), "voices loaded");
    Ok(voices)
}

fn default_voice(
    voices: &BTreeMap<String, PreparedVoice>,
    requested: Option<&str>,
) -> Result<String, LoadError> {
    match requested {
        Some(name) if voices.contains_key(name) => Ok(name.to_string()),
        Some(name) => Err(LoadError::NoVoices(format!(
            "default voice {name:?} is not installed (installed: {})",
            voices.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
        None => voices
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| LoadError::NoVoices("no voices".into())),
    }
}

/// Text a request could send, tokenized once at warmup.
const WARMUP_TEXT: &str = "Hello! This is a warm-up sentence, with digits (42) and punctuation.";

/// Takes [`WARMUP_TEXT`] through the path a request's text takes (normalisation, incremental
/// pre-tokenization and encoding), so the tokenizer builds its lazily made tables here and
/// not inside the first request's first audio (1-2.7 ms on two CPU cores, docs/benchmarks.md
/// session 18).
fn warm_tokenizer(tokenizer: &TextTokenizer) -> vv_model::Result<()> {
    let mut state = IncrementalTokenizer::new();
    state.push(tokenizer, WARMUP_TEXT)?;
    state.finish(tokenizer)?;
    Ok(())
}

impl Runtime {
    /// Resolves the device, loads model, tokenizer and voices, and warms the tokenizer if asked
    /// (the warmup generation runs where the model will: the engine's model thread,
    /// [`crate::start_engine`], or the caller's, as `say` does).
    pub fn load(opts: &EngineOptions, probe: &dyn DeviceProbe) -> Result<Self, LoadError> {
        let resolution = resolve_device(opts.device, probe)?;
        let dtype = select_dtype(resolution.device.backend, opts.dtype, probe);
        let quantize = opts
            .quantize
            .resolve(resolution.device.backend, dtype.dtype)?;
        let device_info = ModelInfo::new(&resolution, &dtype);
        let device = resolution.device.to_candle_device()?;
        let hub = HubOptions {
            revision: opts.model_revision.clone(),
            cache_dir: opts.cache_dir.clone(),
            progress: opts.progress,
        };
        let started = Instant::now();
        let tokenizer = TextTokenizer::from_file(&resolve_tokenizer(&opts.tokenizer, &hub)?)?;
        let model = if opts.random_weights {
            warn!(
                "RANDOM WEIGHTS: serving the real 0.5B architecture with random weights, not the \
                 model; every utterance is NOISE and ends only at the frame cap (EOS is off). \
                 For capacity measurements only."
            );
            let cfg = VibeVoiceConfig::realtime_0_5b();
            VibeVoiceModel::random(cfg, &device, dtype.dtype, quantize.packing)?
        } else {
            let files = resolve_checkpoint(&opts.model, &hub)?;
            VibeVoiceModel::load(&files, &device, dtype.dtype, quantize.packing)?
        };
        model.set_cuda_graphs(opts.cuda_graphs);
        if !opts.cuda_graphs && device.is_cuda() {
            info!("CUDA graphs off by setting: every frame runs kernel by kernel (slower)");
        }
        let voices = load_voices(&model, opts)?;
        let default_voice = default_voice(&voices, opts.default_voice.as_deref())?;
        let load_seconds = started.elapsed().as_secs_f64();
        info!(
            model = %opts.model,
            device = %resolution.device.label(),
            dtype = ?dtype.dtype,
            quantize = quantize.packing.name(),
            quantize_reason = %quantize.reason,
            seconds = load_seconds,
            "model loaded"
        );
        if opts.warmup {
            warm_tokenizer(&tokenizer)?;
        }
        let cfg = model.config();
        let info = EngineInfo {
            model: ModelSummary {
                source: if opts.random_weights {
                    RANDOM_WEIGHTS_SOURCE.to_string()
                } else {
                    opts.model.clone()
                },
                random_weights: opts.random_weights,
                sample_rate: model.sample_rate(),
                frame_samples: model.frame_samples(),
                text_window: vv_model::generation::TEXT_WINDOW,
                speech_window: vv_model::generation::SPEECH_WINDOW,
                max_positions: cfg.decoder_config.max_position_embeddings,
                load_seconds,
                // The warmup generation runs on the model thread (`start_engine`), which fills
                // this in.
                warmup_seconds: None,
                cpu_fallbacks: model.cpu_fallbacks().iter().map(|c| c.name()).collect(),
                quantize_request: opts.quantize,
                quantize: quantize.packing.name(),
                quantize_reason: quantize.reason,
            },
            device: device_info,
            voices: voices.keys().cloned().collect(),
            default_voice,
            slots: opts.slots,
            version: env!("CARGO_PKG_VERSION"),
        };
        Ok(Self {
            model,
            tokenizer: Arc::new(tokenizer),
            voices,
            info,
            device,
        })
    }

    /// The model.
    pub fn model(&self) -> &VibeVoiceModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        self.tokenizer.as_ref()
    }

    /// A prepared voice by installed name.
    pub fn voice(&self, name: &str) -> Option<&PreparedVoice> {
        self.voices.get(name)
    }

    /// What this runtime serves.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// The candle device everything runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
