//! ElevenLabs' `POST /v1/text-to-speech/{voice_id}` and `.../stream`: the body (`text`,
//! `voice_settings.speed`; `model_id`, the other voice settings and the rest ignored), the
//! voice of the path and the `output_format` query are translated into a
//! `POST /v1/audio/speech` body and answered by that route: the audio streams as it is
//! generated (both paths), errors are its JSON errors.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::output_format;
use crate::app::body_limit;
use crate::error::ApiError;
use crate::routes::speech::speech as openai_speech;
use crate::state::AppState;

/// The speech-route body for an ElevenLabs body.
fn speech_body(voice: &str, format: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(request) = value else {
        return Err(ApiError::invalid("text", "the body must be a JSON object"));
    };
    let format = output_format(format)?;
    let mut out = Map::new();
    out.insert(
        "input".into(),
        request.get("text").cloned().unwrap_or(Value::Null),
    );
    out.insert("voice".into(), json!(voice));
    out.insert("response_format".into(), json!(format.encoding));
    out.insert("sample_rate".into(), json!(format.sample_rate));
    if let Some(bit_rate) = format.bit_rate {
        out.insert("bit_rate".into(), json!(bit_rate));
    }
    if let Some(speed) = request
        .get("voice_settings")
        .and_then(|v| v.get("speed"))
        .filter(|s| !s.is_null())
    {
        out.insert("speed".into(), speed.clone());
    }
    Ok(Value::Object(out))
}

/// `POST /v1/text-to-speech/{voice_id}` and `POST /v1/text-to-speech/{voice_id}/stream`.
pub async fn speech(
    State(state): State<AppState>,
    Path(voice_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest {
        message: e.body_text(),
        param: None,
    })?;
    let body = body.map_err(|e| ApiError::from_body_rejection(e, body_limit(&state)))?;
    let format = query.get("output_format").map(String::as_str);
    let translated = speech_body(&voice_id, format, &body)?;
    openai_speech(State(state), Ok(Bytes::from(translated.to_string()))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_translate() {
        let body = json!({"text": "Hi there.", "model_id": "eleven_turbo_v2_5",
                          "voice_settings": {"stability": 0.5, "speed": 1.1}});
        assert_eq!(
            speech_body("alloy", Some("ulaw_8000"), body.to_string().as_bytes()).unwrap(),
            json!({"input": "Hi there.", "voice": "alloy", "response_format": "mulaw",
                   "sample_rate": 8000, "speed": 1.1})
        );
        let plain = speech_body("v", None, br#"{"text": "x"}"#).unwrap();
        assert_eq!(
            (&plain["response_format"], &plain["sample_rate"]),
            (&json!("pcm_s16le"), &json!(24000))
        );
        let mp3 = speech_body("v", Some("mp3_44100_128"), br#"{"text": "x"}"#).unwrap();
        assert_eq!(
            mp3,
            json!({"input": "x", "voice": "v", "response_format": "mp3",
                   "sample_rate": 44100, "bit_rate": 128000})
        );
        let code = |format, body: &[u8]| speech_body("v", format, body).unwrap_err().code();
        assert_eq!(
            code(Some("opus_48000_64"), br#"{"text": "x"}"#),
            "invalid_request"
        );
        assert_eq!(code(None, b"[1]"), "invalid_request");
        assert_eq!(code(None, b"{"), "invalid_json");
    }
}
