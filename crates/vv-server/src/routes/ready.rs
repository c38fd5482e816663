//! `GET /ready`: 200 once the model is loaded and warmed up; 503 while loading and while
//! draining before shutdown.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/ready", get(ready))
}

/// Readiness in words: `ready`, `loading` or `draining`.
pub fn readiness(state: &AppState) -> &'static str {
    if state.is_draining() {
        "draining"
    } else if state.is_ready() {
        "ready"
    } else {
        "loading"
    }
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let status = if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "status": readiness(&state) })))
}
