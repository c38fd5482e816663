//! ElevenLabs' text-to-speech dialect, as Pipecat's `ElevenLabsTTSService` and LiveKit's
//! ElevenLabs plugin speak it (see docs/integrations.md).
//!
//! - [`inbound`]: ElevenLabs requests -> protocol v1 messages.
//! - [`outbound`]: protocol v1 events and audio frames -> ElevenLabs messages (`audio`,
//!   `alignment`, `isFinal`).
//! - [`handler`]: the upgrades of `multi-stream-input` and `stream-input`.
//! - [`speech`]: `POST /v1/text-to-speech/{voice_id}` (and `/stream`), translated into
//!   `POST /v1/audio/speech`.
//!
//! Choices: `{voice_id}` (an installed voice or OpenAI alias) and the `output_format` query
//! (PCM, G.711 or MP3; each `audio` message carries the whole MP3 frames completed so far)
//! apply to the whole socket (ElevenLabs fixes them per connection); every context sends
//! `alignment` (ElevenLabs sends it unasked, and Pipecat relies on it). `close_context` ends a
//! context gracefully (its buffered text is synthesised, then `isFinal`); `close_socket` stops
//! every context at once and closes the socket (1000). `voice_settings.speed` on a context's first message is the core's
//! `speed`; the other voice settings, `model_id`, `auto_mode`, `inactivity_timeout`,
//! `sync_alignment` and the rest are accepted and ignored.

pub mod handler;
pub mod inbound;
pub mod outbound;
pub mod speech;

use axum::routing::{get, post};
use axum::Router;

use vv_audio::SUPPORTED_SAMPLE_RATES;

use crate::error::ApiError;
use crate::state::AppState;

/// Prefix of every ElevenLabs route.
const PREFIX: &str = "/v1/text-to-speech/";

/// Suffix of the multi-context WebSocket.
const MULTI: &str = "/multi-stream-input";

/// Suffix of the single-context WebSocket.
const SINGLE: &str = "/stream-input";

/// Route of the multi-context WebSocket.
pub const MULTI_PATH: &str = "/v1/text-to-speech/{voice_id}/multi-stream-input";

/// Route of the single-context WebSocket.
pub const SINGLE_PATH: &str = "/v1/text-to-speech/{voice_id}/stream-input";

/// Route of the HTTP synthesis.
pub const SPEECH_PATH: &str = "/v1/text-to-speech/{voice_id}";

/// Route of the HTTP streaming synthesis.
pub const STREAM_PATH: &str = "/v1/text-to-speech/{voice_id}/stream";

/// The `output_format` names accepted (`mp3_<rate>_<kb/s>`: any rate of the `pcm_` list and
/// 8 to 320 kb/s, snapped to the MPEG version's bitrates; ElevenLabs lists `mp3_22050_32`,
/// `mp3_24000_48` and `mp3_44100_32` to `mp3_44100_192`).
pub const OUTPUT_FORMATS: &str = "pcm_8000, pcm_16000, pcm_22050, pcm_24000, pcm_32000, \
     pcm_44100, pcm_48000, ulaw_8000, alaw_8000, mp3_<rate>_<kbps> (e.g. mp3_44100_128)";

/// `output_format` when none is given. ElevenLabs' own default is `mp3_44100_128`, but every
/// framework integration asks for PCM, and raw PCM costs no encoding; this server has always
/// answered PCM when none is named.
pub const DEFAULT_OUTPUT_FORMAT: &str = "pcm_24000";

/// What an `output_format` names, in the terms of the v1 protocol and the speech route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// The v1 encoding name (`pcm_s16le`, `mulaw`, `alaw`, `mp3`).
    pub encoding: &'static str,
    /// Output sample rate in Hz.
    pub sample_rate: i64,
    /// Bits per second, for `mp3`.
    pub bit_rate: Option<i64>,
}

/// Whether `path` is one of the ElevenLabs WebSockets (for the `api_key` query parameter).
pub fn is_websocket_path(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|rest| {
        [MULTI, SINGLE].iter().any(|suffix| {
            rest.strip_suffix(suffix)
                .is_some_and(|voice| !voice.is_empty() && !voice.contains('/'))
        })
    })
}

/// The format of an `output_format` name (absent: the default).
pub fn output_format(name: Option<&str>) -> Result<Format, ApiError> {
    let name = name.unwrap_or(DEFAULT_OUTPUT_FORMAT);
    let refused = || {
        ApiError::invalid(
            "output_format",
            format!("output_format {name:?} is not supported; supported: {OUTPUT_FORMATS}"),
        )
    };
    let mut parts = name.split('_');
    let (Some(codec), Some(rate)) = (parts.next(), parts.next()) else {
        return Err(refused());
    };
    let sample_rate: i64 = rate.parse().map_err(|_| refused())?;
    let kbps = parts.next().map(str::parse::<i64>);
    let pcm_rate =
        u32::try_from(sample_rate).is_ok_and(|rate| SUPPORTED_SAMPLE_RATES.contains(&rate));
    let (encoding, bit_rate) = match (codec, kbps, parts.next()) {
        ("pcm", None, None) if pcm_rate => ("pcm_s16le", None),
        ("ulaw", None, None) if sample_rate == 8000 => ("mulaw", None),
        ("alaw", None, None) if sample_rate == 8000 => ("alaw", None),
        ("mp3", Some(Ok(kbps @ 8..=320)), None) if pcm_rate => ("mp3", Some(kbps * 1000)),
        _ => return Err(refused()),
    };
    Ok(Format {
        encoding,
        sample_rate,
        bit_rate,
    })
}

/// The ElevenLabs routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(MULTI_PATH, get(handler::multi_stream_input))
        .route(SINGLE_PATH, get(handler::stream_input))
        .route(SPEECH_PATH, post(speech::speech))
        .route(STREAM_PATH, post(speech::speech))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_parse() {
        let ok = |name| {
            let f = output_format(name).unwrap();
            (f.encoding, f.sample_rate, f.bit_rate)
        };
        assert_eq!(ok(None), ("pcm_s16le", 24000, None));
        assert_eq!(ok(Some("pcm_44100")), ("pcm_s16le", 44100, None));
        assert_eq!(ok(Some("pcm_32000")), ("pcm_s16le", 32000, None));
        assert_eq!(ok(Some("ulaw_8000")), ("mulaw", 8000, None));
        assert_eq!(ok(Some("alaw_8000")), ("alaw", 8000, None));
        assert_eq!(ok(Some("mp3_44100_128")), ("mp3", 44100, Some(128_000)));
        assert_eq!(ok(Some("mp3_22050_32")), ("mp3", 22050, Some(32_000)));
        assert_eq!(ok(Some("mp3_24000_48")), ("mp3", 24000, Some(48_000)));
        for bad in [
            "opus_48000_64",
            "pcm_12345",
            "ulaw_16000",
            "pcm",
            "pcm_24000_16",
            "mp3_44100",
            "mp3_44100_1000",
            "mp3_11025_32",
            "mp3_44100_128_x",
        ] {
            let e = output_format(Some(bad)).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad}");
        }
    }

    #[test]
    fn websocket_paths_are_recognised() {
        assert!(is_websocket_path(
            "/v1/text-to-speech/alloy/multi-stream-input"
        ));
        assert!(is_websocket_path("/v1/text-to-speech/alloy/stream-input"));
        assert!(!is_websocket_path("/v1/text-to-speech/alloy/stream"));
        assert!(!is_websocket_path("/v1/text-to-speech/alloy"));
        assert!(!is_websocket_path("/v1/text-to-speech//stream-input"));
        assert!(!is_websocket_path("/v1/text-to-speech/a/b/stream-input"));
    }
}
