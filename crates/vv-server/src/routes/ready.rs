//! `GET /ready`: 200 once the model is loaded and warmed up and its thread is alive; 503 while
//! loading, while draining before shutdown, and when the model thread is stuck (no heartbeat
//! for `engine_stall_timeout_secs`) or dead. [`engine_failure`] is what the server races with
//! its shutdown signal, so that such an engine also makes the process exit with an error.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use vv_engine::{EngineHandle, EngineHealth};

use crate::state::AppState;

/// How often [`engine_failure`] looks at the engine's health.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/ready", get(ready))
}

/// Readiness in words: `ready`, `loading`, `draining`, `engine_stalled` or `engine_dead`.
pub fn readiness(state: &AppState) -> &'static str {
    if state.is_draining() {
        return "draining";
    }
    match state.loaded_engine().map(EngineHandle::health) {
        None => "loading",
        Some(EngineHealth::Running) => "ready",
        Some(EngineHealth::Stalled { .. }) => "engine_stalled",
        Some(EngineHealth::Dead | EngineHealth::Stopped) => "engine_dead",
    }
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let word = readiness(&state);
    let status = if word == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "status": word })))
}

/// Resolves with the engine's health once its model thread is stuck or dead (never when it
/// was stopped on purpose). The failure must be seen at two checks in a row: `/ready` answers
/// 503 for at least one interval before the server stops, so a load balancer sees the
/// instance unready first, and a thread that recovers in between is not restarted.
pub async fn engine_failure(engine: &EngineHandle) -> EngineHealth {
    let mut seen = false;
    loop {
        match engine.health() {
            EngineHealth::Running => seen = false,
            EngineHealth::Stopped => std::future::pending::<()>().await,
            failed if seen => return failed,
            _ => seen = true,
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}
