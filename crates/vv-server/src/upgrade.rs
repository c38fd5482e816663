//! The checks every WebSocket route makes before upgrading, answered with HTTP errors: a real
//! upgrade request, parseable query parameters, and an engine that is loaded and not draining;
//! and the inbound message-size limit every route applies.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::Query;
use vv_engine::EngineHandle;

use crate::error::ApiError;
use crate::state::AppState;

/// What a WebSocket route needs once the common checks passed.
pub struct Upgrade {
    /// The pending upgrade.
    pub upgrade: WebSocketUpgrade,
    /// The query parameters.
    pub query: HashMap<String, String>,
    /// The running engine.
    pub engine: EngineHandle,
}

/// Runs the common pre-upgrade checks of the route at `path`.
pub fn prepare(
    path: &str,
    state: &AppState,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Upgrade, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::InvalidRequest {
        message: format!("{path} needs a WebSocket upgrade: {e}"),
        param: None,
    })?;
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest {
        message: e.body_text(),
        param: None,
    })?;
    let engine = state.engine()?.clone();
    // Every route takes inbound messages (and each frame of a fragmented one) up to the same
    // size; a bigger one closes the socket with 1009.
    let max = state.settings().limits.max_message_bytes;
    let upgrade = upgrade.max_message_size(max).max_frame_size(max);
    Ok(Upgrade {
        upgrade,
        query,
        engine,
    })
}
