//! The upgrade handler of `GET /v1/tts/stream`. Checks that answer with HTTP errors come
//! first (API keys are checked by the shared middleware: 401): not ready or draining -> 503,
//! no free synthesis slot -> 503 `overloaded` (both with `Retry-After`), bad query
//! parameters -> 400. Then the upgrade, with the transport's message size capped at
//! `max_message_bytes`.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::response::Response;

use super::error::WsError;
use super::session::run_session;
use super::session_config::SessionConfig;
use super::transport::adapt;
use crate::error::ApiError;
use crate::state::AppState;
use crate::trace::Carry;
use crate::upgrade::{prepare, Upgrade};

/// The query parameter each session-default error is about.
fn param_of(error: &WsError) -> Option<&'static str> {
    match error {
        WsError::UnknownVoice(..) => Some("voice"),
        WsError::UnsupportedEncoding(_) => Some("encoding"),
        WsError::UnsupportedSampleRate(_) | WsError::InvalidValue(_) => Some("sample_rate"),
        _ => None,
    }
}

/// `GET /v1/tts/stream`.
pub async fn stream(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Upgrade {
        upgrade,
        query,
        engine,
    } = prepare("/v1/tts/stream", &state, query, upgrade)?;
    if !engine.has_free_slot() {
        return Err(ApiError::Overloaded {
            total: engine.slots_total(),
        });
    }
    let defaults = SessionConfig::defaults(state.settings(), engine.info())
        .with_query(&query, engine.info())
        .map_err(|e| ApiError::InvalidRequest {
            message: e.to_string(),
            param: param_of(&e),
        })?;
    let carry = Carry::current();
    Ok(upgrade.on_upgrade(move |socket| {
        let (outgoing, incoming) = adapt(socket);
        carry.wrap(run_session(state, engine, defaults, outgoing, incoming))
    }))
}
