//! The upgrade of `GET /tts/websocket` ([`crate::dialects::codec::upgrade`]) with Cartesia's
//! codec on both sides. The key comes as `X-API-Key` or the `api_key` query parameter (see
//! [`crate::auth`]); `Cartesia-Version` and `cartesia_version` are accepted and ignored.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::response::Response;

use super::inbound::translate;
use super::outbound::Outbound;
use super::PATH;
use crate::dialects::codec::{upgrade, Translation};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /tts/websocket`.
pub async fn websocket(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade_request: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    upgrade(PATH, state, query, upgrade_request, |defaults, _, _| {
        let mut codec = Outbound::default();
        Ok(Translation {
            defaults,
            inbound: translate,
            outbound: move |item| codec.translate(item),
        })
    })
}
