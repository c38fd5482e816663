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

/// The `output_format` names accepted.
pub const OUTPUT_FORMATS: &str =
    "pcm_8000, pcm_16000, pcm_22050, pcm_24000, pcm_32000, pcm_44100, pcm_48000, ulaw_8000, alaw_8000";

/// `output_format` when none is given (ElevenLabs' own default, MP3, is not produced here).
pub const DEFAULT_OUTPUT_FORMAT: &str = "pcm_24000";

/// Whether `path` is one of the ElevenLabs WebSockets (for the `api_key` query parameter).
pub fn is_websocket_path(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|rest| {
        [MULTI, SINGLE].iter().any(|suffix| {
            rest.strip_suffix(suffix)
                .is_some_and(|voice| !voice.is_empty() && !voice.contains('/'))
        })
    })
}

/// The v1 encoding name and sample rate of an `output_format` (absent: the default).
pub fn output_format(name: Option<&str>) -> Result<(&'static str, i64), ApiError> {
    let name = name.unwrap_or(DEFAULT_OUTPUT_FORMAT);
    let refused = || {
        ApiError::invalid(
            "output_format",
            format!("output_format {name:?} is not supported; supported: {OUTPUT_FORMATS}"),
        )
    };
    let (codec, rate) = name.split_once('_').ok_or_else(refused)?;
    let encoding = match codec {
        "pcm" => "pcm_s16le",
        "ulaw" => "mulaw",
        "alaw" => "alaw",
        _ => return Err(refused()),
    };
    let rate: i64 = rate.parse().map_err(|_| refused())?;
    let supported = match encoding {
        "pcm_s16le" => [8000, 16000, 22050, 24000, 32000, 44100, 48000].contains(&rate),
        _ => rate == 8000,
    };
    supported.then_some((encoding, rate)).ok_or_else(refused)
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
        assert_eq!(output_format(None).unwrap(), ("pcm_s16le", 24000));
        assert_eq!(
            output_format(Some("pcm_44100")).unwrap(),
            ("pcm_s16le", 44100)
        );
        assert_eq!(
            output_format(Some("pcm_32000")).unwrap(),
            ("pcm_s16le", 32000)
        );
        assert_eq!(output_format(Some("ulaw_8000")).unwrap(), ("mulaw", 8000));
        assert_eq!(output_format(Some("alaw_8000")).unwrap(), ("alaw", 8000));
        for bad in [
            "mp3_44100_128",
            "opus_48000_64",
            "pcm_12345",
            "ulaw_16000",
            "pcm",
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
