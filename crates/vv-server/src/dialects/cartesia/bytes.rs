//! Cartesia's `POST /tts/bytes`: the body (`transcript`, `voice`, `output_format`,
//! `generation_config.speed`; `model_id`, `language` and the rest ignored) is translated into
//! a `POST /v1/audio/speech` body and answered by that route: the audio streams as it is
//! generated, errors are its JSON errors.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::app::body_limit;
use crate::error::ApiError;
use crate::routes::speech::speech;
use crate::state::AppState;

/// The `response_format` of a Cartesia `output_format`.
fn response_format(format: &Value) -> Result<Value, ApiError> {
    let encoding = format.get("encoding").and_then(Value::as_str);
    let name = match (format.get("container").and_then(Value::as_str), encoding) {
        (None | Some("raw"), None | Some("pcm_s16le")) => "pcm_s16le",
        (None | Some("raw"), Some("pcm_f32le")) => "pcm_f32le",
        (None | Some("raw"), Some("pcm_mulaw")) => "mulaw",
        (None | Some("raw"), Some("pcm_alaw")) => "alaw",
        (Some("wav"), None | Some("pcm_s16le")) => "wav",
        (Some("mp3"), None) => "mp3",
        (container, encoding) => {
            return Err(ApiError::UnsupportedFormat(format!(
                "container {container:?} with encoding {encoding:?}"
            )))
        }
    };
    Ok(json!(name))
}

/// The speech-route body for a Cartesia body.
fn speech_body(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(request) = value else {
        return Err(ApiError::invalid(
            "transcript",
            "the body must be a JSON object",
        ));
    };
    let mut out = Map::new();
    out.insert(
        "input".into(),
        request.get("transcript").cloned().unwrap_or(Value::Null),
    );
    match request.get("voice") {
        None | Some(Value::Null) => {}
        Some(voice) if voice.get("mode").is_none_or(|m| m == "id") => {
            out.insert(
                "voice".into(),
                voice.get("id").cloned().unwrap_or(Value::Null),
            );
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "voice",
                "only voice mode \"id\" is supported",
            ))
        }
    }
    if let Some(format) = request.get("output_format").filter(|f| !f.is_null()) {
        let name = response_format(format)?;
        // Cartesia sends `bit_rate` with MP3 only; elsewhere it has no meaning here either.
        let keys: &[&str] = match name == "mp3" {
            true => &["sample_rate", "bit_rate"],
            false => &["sample_rate"],
        };
        out.insert("response_format".into(), name);
        for &key in keys {
            if let Some(value) = format.get(key) {
                out.insert(key.into(), value.clone());
            }
        }
    }
    if let Some(speed) = request
        .get("generation_config")
        .and_then(|g| g.get("speed"))
    {
        if speed != "normal" {
            out.insert("speed".into(), speed.clone());
        }
    }
    Ok(Value::Object(out))
}

/// `POST /tts/bytes`.
pub async fn bytes(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::from_body_rejection(e, body_limit(&state)))?;
    let translated = speech_body(&body)?;
    speech(State(state), Ok(Bytes::from(translated.to_string()))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_translate() {
        let body = json!({
            "model_id": "sonic-2", "transcript": "Hi there.", "language": "en",
            "voice": {"mode": "id", "id": "alloy"},
            "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
            "generation_config": {"speed": 1.25},
        });
        assert_eq!(
            speech_body(body.to_string().as_bytes()).unwrap(),
            json!({"input": "Hi there.", "voice": "alloy", "response_format": "mulaw",
                   "sample_rate": 8000, "speed": 1.25})
        );
        let wav = json!({"transcript": "x", "output_format": {"container": "wav",
                         "encoding": "pcm_s16le", "sample_rate": 44100}});
        assert_eq!(
            speech_body(wav.to_string().as_bytes()).unwrap()["response_format"],
            "wav"
        );
        let mp3 = json!({"transcript": "x", "output_format": {"container": "mp3",
                         "sample_rate": 44100, "bit_rate": 128000}});
        assert_eq!(
            speech_body(mp3.to_string().as_bytes()).unwrap(),
            json!({"input": "x", "response_format": "mp3", "sample_rate": 44100,
                   "bit_rate": 128000})
        );
        let raw = json!({"transcript": "x", "output_format": {"container": "raw",
                         "encoding": "pcm_s16le", "sample_rate": 8000, "bit_rate": 1}});
        assert!(speech_body(raw.to_string().as_bytes()).unwrap()["bit_rate"].is_null());
        let code = |v: Value| speech_body(v.to_string().as_bytes()).unwrap_err().code();
        assert_eq!(
            code(json!({"transcript": "x", "output_format": {"container": "ogg"}})),
            "unsupported_format"
        );
        assert_eq!(
            code(json!({"transcript": "x", "voice": {"mode": "embedding"}})),
            "invalid_request"
        );
        assert_eq!(speech_body(b"[1]").unwrap_err().code(), "invalid_request");
        assert_eq!(speech_body(b"{").unwrap_err().code(), "invalid_json");
    }
}
