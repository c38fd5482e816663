//! Output formats: OpenAI `response_format` names and the raw protocol encodings.

use std::fmt;
use std::str::FromStr;

use crate::error::AudioError;
use crate::pcm::Encoding;

/// What an [`crate::AudioEncoder`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// Headerless samples in the given encoding (`pcm` is `Raw(PcmS16le)`).
    Raw(Encoding),
    /// 16-bit PCM WAV with the streaming (0xFFFFFFFF) header.
    Wav,
    /// FLAC, 16-bit mono.
    Flac,
    /// Ogg Opus.
    Opus,
    /// MP3, mono, constant bitrate: `kbps` (snapped to the MPEG version's table) or, when
    /// `None`, [`crate::mp3::default_kbps`] of the output rate.
    Mp3 {
        /// The bitrate asked for, in kb/s.
        kbps: Option<u16>,
    },
}

impl OutputFormat {
    /// The `Content-Type` for an HTTP response carrying this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Raw(Encoding::PcmS16le | Encoding::PcmF32le) => "audio/pcm",
            OutputFormat::Raw(Encoding::Mulaw) => "audio/PCMU",
            OutputFormat::Raw(Encoding::Alaw) => "audio/PCMA",
            OutputFormat::Wav => "audio/wav",
            OutputFormat::Flac => "audio/flac",
            OutputFormat::Opus => "audio/ogg",
            OutputFormat::Mp3 { .. } => "audio/mpeg",
        }
    }

    /// The name of a format a stream of audio frames can carry (the WebSocket protocols'
    /// `encoding`): a raw encoding's name or `mp3`, whose frames each decode on their own;
    /// `None` for the containers (WAV, FLAC, Ogg Opus), whose header opens the whole stream.
    pub fn frame_stream_name(self) -> Option<&'static str> {
        match self {
            OutputFormat::Raw(encoding) => Some(encoding.as_str()),
            OutputFormat::Mp3 { .. } => Some("mp3"),
            OutputFormat::Wav | OutputFormat::Flac | OutputFormat::Opus => None,
        }
    }
}

impl From<Encoding> for OutputFormat {
    fn from(encoding: Encoding) -> Self {
        OutputFormat::Raw(encoding)
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Raw(Encoding::PcmS16le) => "pcm",
            OutputFormat::Raw(e) => e.as_str(),
            OutputFormat::Wav => "wav",
            OutputFormat::Flac => "flac",
            OutputFormat::Opus => "opus",
            OutputFormat::Mp3 { .. } => "mp3",
        })
    }
}

impl FromStr for OutputFormat {
    type Err = AudioError;

    /// Accepts OpenAI's `response_format` values (`wav`, `mp3`, `pcm`, `flac`, `opus`; `mp3`
    /// at the rate's default bitrate) and the raw encoding names (`pcm_s16le`, `pcm_f32le`,
    /// `mulaw`, `alaw`). Anything else, including OpenAI's `aac`, is `unsupported_format`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wav" => Ok(OutputFormat::Wav),
            "pcm" => Ok(OutputFormat::Raw(Encoding::PcmS16le)),
            "flac" => Ok(OutputFormat::Flac),
            "opus" => Ok(OutputFormat::Opus),
            "mp3" => Ok(OutputFormat::Mp3 { kbps: None }),
            other => other
                .parse::<Encoding>()
                .map(OutputFormat::Raw)
                .map_err(|_| AudioError::UnsupportedFormat(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_names_and_encodings() {
        assert_eq!("wav".parse::<OutputFormat>().unwrap(), OutputFormat::Wav);
        assert_eq!(
            "pcm".parse::<OutputFormat>().unwrap(),
            OutputFormat::Raw(Encoding::PcmS16le)
        );
        assert_eq!("flac".parse::<OutputFormat>().unwrap(), OutputFormat::Flac);
        assert_eq!("opus".parse::<OutputFormat>().unwrap(), OutputFormat::Opus);
        assert_eq!(
            "mp3".parse::<OutputFormat>().unwrap(),
            OutputFormat::Mp3 { kbps: None }
        );
        assert_eq!(
            "alaw".parse::<OutputFormat>().unwrap(),
            OutputFormat::Raw(Encoding::Alaw)
        );
        for bad in ["aac", "MP3", "WAV", ""] {
            let err = bad.parse::<OutputFormat>().unwrap_err();
            assert_eq!(err.code(), "unsupported_format", "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        let all = [
            OutputFormat::Wav,
            OutputFormat::Flac,
            OutputFormat::Opus,
            OutputFormat::Mp3 { kbps: None },
            OutputFormat::Raw(Encoding::PcmS16le),
            OutputFormat::Raw(Encoding::PcmF32le),
            OutputFormat::Raw(Encoding::Mulaw),
            OutputFormat::Raw(Encoding::Alaw),
        ];
        for f in all {
            assert_eq!(f.to_string().parse::<OutputFormat>().unwrap(), f);
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(OutputFormat::Wav.content_type(), "audio/wav");
        assert_eq!(
            OutputFormat::Raw(Encoding::PcmS16le).content_type(),
            "audio/pcm"
        );
        assert_eq!(OutputFormat::Flac.content_type(), "audio/flac");
        assert_eq!(OutputFormat::Opus.content_type(), "audio/ogg");
        let mp3 = OutputFormat::Mp3 { kbps: Some(32) };
        assert_eq!(mp3.content_type(), "audio/mpeg");
    }
}
