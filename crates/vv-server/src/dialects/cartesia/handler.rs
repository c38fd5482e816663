//! The upgrade of `GET /tts/websocket`: the checks of `GET /v1/tts/stream` (HTTP errors before
//! the upgrade: 503 when not ready, draining or without a free slot), then the v1 session with
//! Cartesia's codec on both sides. The key comes as `X-API-Key` or the `api_key` query
//! parameter (see [`crate::auth`]); `Cartesia-Version` and `cartesia_version` are accepted and
//! ignored.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{stream, SinkExt, StreamExt};

use super::inbound::translate;
use super::outbound::Outbound;
use super::PATH;
use crate::error::ApiError;
use crate::state::AppState;
use crate::trace::Carry;
use crate::upgrade::{prepare, Upgrade};
use crate::ws::transport::adapt;
use crate::ws::{run_session, SessionConfig};

/// `GET /tts/websocket`.
pub async fn websocket(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Upgrade {
        upgrade, engine, ..
    } = prepare(PATH, &state, query, upgrade)?;
    if !engine.has_free_slot() {
        return Err(ApiError::Overloaded {
            total: engine.slots_total(),
        });
    }
    let defaults = SessionConfig::defaults(state.settings(), engine.info());
    let carry = Carry::current();
    Ok(upgrade.on_upgrade(move |socket| {
        let (outgoing, incoming) = adapt(socket);
        let mut codec = Outbound::default();
        let outgoing = outgoing
            .with_flat_map(move |item| stream::iter(codec.translate(item).into_iter().map(Ok)));
        let incoming = incoming.flat_map(|item| stream::iter(translate(item)));
        carry.wrap(run_session(state, engine, defaults, outgoing, incoming))
    }))
}
