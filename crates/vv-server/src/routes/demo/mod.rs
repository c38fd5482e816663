//! Compatibility with the official web demo (`demo/web/app.py`): `GET /config` and the
//! `/stream` WebSocket, so the demo's page works against this service.

mod query;
mod stream;
pub mod wire;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/config", get(config))
        .route("/stream", get(stream::stream))
}

/// `{"voices": [sorted names], "default_voice": name}`.
async fn config(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let info = state.engine()?.info();
    Ok(Json(json!({
        "voices": info.voices,
        "default_voice": info.default_voice,
    })))
}
