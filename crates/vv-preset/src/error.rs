//! The preset reader's error type, each variant with a stable machine label.

/// What can go wrong reading, checking or converting a voice preset.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// The file or directory cannot be read or written.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable preset, or does not fit the model.
    #[error("invalid voice preset {path}: {reason}")]
    Invalid { path: String, reason: String },
    /// The `.pt` archive has entries that overlap (a zip-bomb construction).
    #[error("invalid voice preset {path}: {reason}")]
    OverlappingEntries { path: String, reason: String },
    /// Reading the file would allocate more than its size allows.
    #[error("invalid voice preset {path}: {reason}")]
    AllocationBudget { path: String, reason: String },
    /// No preset of this name in the library.
    #[error("unknown voice {0:?}")]
    UnknownVoice(String),
    /// A conversion was asked for something the preset cannot become.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor operation failed.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl PresetError {
    /// Stable snake_case label for logs, metrics and API error codes.
    pub fn code(&self) -> &'static str {
        match self {
            PresetError::Io { .. } => "io_error",
            PresetError::Invalid { .. } => "invalid_voice_preset",
            PresetError::OverlappingEntries { .. } => "overlapping_zip_entries",
            PresetError::AllocationBudget { .. } => "allocation_budget_exceeded",
            PresetError::UnknownVoice(_) => "unknown_voice",
            PresetError::InvalidInput(_) => "invalid_input",
            PresetError::Candle(_) => "compute_error",
        }
    }
}

/// Result alias of the preset crate.
pub type Result<T> = std::result::Result<T, PresetError>;
