//! `POST /v1/audio/speech`, OpenAI-compatible: the audio streams as it is generated, as a
//! chunked body (`stream_format: "audio"`, streaming WAV headers use 0xFFFFFFFF sizes) or as
//! server-sent events (`"sse"`).

mod audio;
pub mod request;
pub mod sse;

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use self::audio::AudioChunks;
use self::request::{SpeechRequest, StreamFormat};
use crate::app::body_limit;
use crate::error::ApiError;
use crate::state::AppState;

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audio/speech", post(speech))
}

/// `POST /v1/audio/speech` (also the engine of dialects' HTTP routes, which translate their
/// bodies into this one).
pub(crate) async fn speech(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    let body = body.map_err(|e| ApiError::from_body_rejection(e, body_limit(&state)))?;
    let settings = state.settings();
    let request = SpeechRequest::parse(&body, settings)?;
    let engine = state.engine()?;
    let info = engine.info();
    let plan = request.plan(settings, info)?;
    let encoder = vv_audio::new_encoder_at_speed(plan.format, plan.sample_rate, plan.speed)?;
    let content_type = encoder.content_type();
    let mut utterance = engine.start(plan.params)?;
    utterance.push_text(&plan.input)?;
    utterance.close()?;
    let metrics = state.metrics();
    let mut recorder = metrics.context(received, info.model.sample_rate);
    recorder.admitted(&utterance);
    let chunks = AudioChunks::start(utterance, encoder, recorder, metrics.clone()).await?;
    let response = match plan.stream_format {
        StreamFormat::Audio => (
            [(header::CONTENT_TYPE, content_type)],
            Body::from_stream(chunks.into_stream()),
        )
            .into_response(),
        StreamFormat::Sse => (
            [
                (header::CONTENT_TYPE, sse::CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(sse::sse_events(chunks.into_stream())),
        )
            .into_response(),
    };
    Ok(response)
}
