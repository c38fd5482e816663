//! The crate's error type, with stable snake_case codes for the wire protocol and metrics.

/// Everything that can go wrong while converting, resampling or encoding audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The requested output sample rate is not one this crate produces.
    #[error("unsupported sample rate {rate} Hz (supported: {supported})")]
    UnsupportedSampleRate {
        /// The rate that was asked for.
        rate: u32,
        /// Human-readable list of the rates that would have been accepted.
        supported: &'static str,
    },
    /// The requested container/response format is unknown or not available (e.g. `aac`).
    #[error("unsupported format `{0}` (supported: wav, mp3, pcm, flac, opus)")]
    UnsupportedFormat(String),
    /// The requested sample encoding is unknown.
    #[error("unsupported encoding `{0}` (supported: pcm_s16le, pcm_f32le, mulaw, alaw)")]
    UnsupportedEncoding(String),
    /// The requested playback speed is outside the supported range (or not a number).
    #[error("speed {0} is outside the supported range 0.25 to 4.0")]
    UnsupportedSpeed(f64),
    /// The resampler library refused its input or configuration.
    #[error("resampling failed: {0}")]
    Resample(String),
    /// The FLAC encoder failed.
    #[error("FLAC encoding failed: {0}")]
    Flac(String),
    /// The Opus encoder or its Ogg muxer failed.
    #[error("Opus encoding failed: {0}")]
    Opus(String),
    /// The MP3 encoder failed.
    #[error("MP3 encoding failed: {0}")]
    Mp3(String),
    /// `push` or `finish` was called on an encoder that has already finished.
    #[error("the audio encoder has already been finished")]
    Finished,
    /// A WAV body would not fit the 32-bit RIFF size fields.
    #[error("WAV data of {0} bytes exceeds the 4 GiB RIFF limit")]
    WavTooLarge(u64),
    /// A binary audio frame header could not be decoded.
    #[error("invalid audio frame header: {0}")]
    InvalidFrameHeader(&'static str),
    /// Writing a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl AudioError {
    /// Stable snake_case identifier for this error (used in API error bodies and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::UnsupportedSampleRate { .. } => "unsupported_sample_rate",
            AudioError::UnsupportedFormat(_) => "unsupported_format",
            AudioError::UnsupportedEncoding(_) => "unsupported_encoding",
            AudioError::UnsupportedSpeed(_) => "unsupported_speed",
            AudioError::Resample(_) => "resample_failed",
            AudioError::Flac(_) => "flac_encode_failed",
            AudioError::Opus(_) => "opus_encode_failed",
            AudioError::Mp3(_) => "mp3_encode_failed",
            AudioError::Finished => "encoder_finished",
            AudioError::WavTooLarge(_) => "wav_too_large",
            AudioError::InvalidFrameHeader(_) => "invalid_frame_header",
            AudioError::Io(_) => "io_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let all = [
            AudioError::UnsupportedSampleRate {
                rate: 1,
                supported: "x",
            },
            AudioError::UnsupportedFormat("aac".into()),
            AudioError::UnsupportedEncoding("x".into()),
            AudioError::UnsupportedSpeed(5.0),
            AudioError::Resample("x".into()),
            AudioError::Flac("x".into()),
            AudioError::Opus("x".into()),
            AudioError::Mp3("x".into()),
            AudioError::Finished,
            AudioError::WavTooLarge(1),
            AudioError::InvalidFrameHeader("x"),
            AudioError::Io(std::io::Error::other("x")),
        ];
        let codes: Vec<&str> = all.iter().map(AudioError::code).collect();
        assert_eq!(codes[0], "unsupported_sample_rate");
        assert_eq!(codes[1], "unsupported_format");
        for c in &codes {
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{c}"
            );
        }
        let mut dedup = codes.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), codes.len(), "codes must be unique");
    }
}
