//! Errors of device resolution and initialisation.

/// Why an explicitly requested device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The backend is not compiled into this build.
    #[error(
        "device {device} is not available: this build has no {feature} support; \
         rebuild with --features {feature}, or use TTS_DEVICE=auto to pick the best available device"
    )]
    NotCompiled {
        /// The requested device, e.g. `cuda:0` or `mps`.
        device: String,
        /// The cargo feature that compiles the backend in.
        feature: &'static str,
    },
    /// The backend is compiled in but has no driver, library or device.
    #[error(
        "device {device} is unavailable: {reason}; use TTS_DEVICE=auto to pick the best available device"
    )]
    Unavailable {
        /// The requested device.
        device: String,
        /// What is missing, as reported by the driver or probe.
        reason: String,
    },
    /// A CUDA ordinal at or beyond the number of devices present.
    #[error(
        "device {device} is unavailable: index {index} is out of range, {count} CUDA device(s) present \
         (valid: cuda:0 to cuda:{last}); use TTS_DEVICE=auto to pick the best available device",
        last = count.saturating_sub(1)
    )]
    OutOfRange {
        /// The requested device.
        device: String,
        /// The requested ordinal.
        index: usize,
        /// How many devices the driver reports (at least 1; zero devices is `Unavailable`).
        count: usize,
    },
    /// The device exists but candle could not initialise or use it.
    #[error("device {device} could not be initialised: {reason}")]
    Init {
        /// The device.
        device: String,
        /// The error or panic message of candle or the driver.
        reason: String,
    },
}

impl DeviceError {
    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotCompiled { .. } => "device_not_compiled",
            Self::Unavailable { .. } => "device_unavailable",
            Self::OutOfRange { .. } => "device_out_of_range",
            Self::Init { .. } => "device_init_failed",
        }
    }

    /// The device the error is about.
    pub fn device(&self) -> &str {
        match self {
            Self::NotCompiled { device, .. }
            | Self::Unavailable { device, .. }
            | Self::OutOfRange { device, .. }
            | Self::Init { device, .. } => device,
        }
    }
}
