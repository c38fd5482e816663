//! The model crate's error type, each variant with a stable machine label.

/// Everything that can go wrong while loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("missing file {0}")]
    MissingFile(String),
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    #[error("checkpoint tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    #[error("invalid voice preset {path}: {reason}")]
    Preset { path: String, reason: String },
    #[error("unknown voice {0:?}")]
    UnknownVoice(String),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("model download failed: {0}")]
    Download(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("fixture {path}: {reason}")]
    Fixture { path: String, reason: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("the model panicked: {0}")]
    Panicked(String),
    #[error("quantization unsupported here: {0}")]
    QuantizeUnsupported(String),
}

impl ModelError {
    /// Stable snake_case label for logs, metrics and API error codes.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Io { .. } => "io_error",
            ModelError::MissingFile(_) => "missing_file",
            ModelError::InvalidConfig(_) => "invalid_config",
            ModelError::Tensor { .. } => "invalid_tensor",
            ModelError::Preset { .. } => "invalid_voice_preset",
            ModelError::UnknownVoice(_) => "unknown_voice",
            ModelError::Tokenizer(_) => "tokenizer_error",
            ModelError::Download(_) => "download_failed",
            ModelError::InvalidInput(_) => "invalid_input",
            ModelError::Fixture { .. } => "fixture_error",
            ModelError::Candle(_) => "compute_error",
            ModelError::Panicked(_) => "internal_error",
            ModelError::QuantizeUnsupported(_) => "quantize_unsupported",
        }
    }
}

impl From<vv_preset::PresetError> for ModelError {
    fn from(e: vv_preset::PresetError) -> Self {
        use vv_preset::PresetError as P;
        match e {
            P::Io { path, source } => ModelError::Io { path, source },
            P::Invalid { path, reason }
            | P::OverlappingEntries { path, reason }
            | P::AllocationBudget { path, reason } => ModelError::Preset { path, reason },
            P::UnknownVoice(name) => ModelError::UnknownVoice(name),
            P::InvalidInput(message) => ModelError::InvalidInput(message),
            P::Candle(e) => ModelError::Candle(e),
        }
    }
}

/// Result alias of the model crate.
pub type Result<T> = std::result::Result<T, ModelError>;
