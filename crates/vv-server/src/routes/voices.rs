//! `GET /v1/audio/voices`: the installed voices with the OpenAI aliases that map onto each
//! (see [`crate::voice_alias`] for the mapping).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;
use crate::voice_alias::aliases_of;

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audio/voices", get(voices))
}

async fn voices(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let info = state.engine()?.info();
    let data: Vec<Value> = info
        .voices
        .iter()
        .map(|v| {
            json!({
                "id": v,
                "name": v,
                "object": "voice",
                "default": *v == info.default_voice,
                "aliases": aliases_of(&info.voices, v),
            })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "default_voice": info.default_voice,
    })))
}
