//! The upgrades of `GET /v1/text-to-speech/{voice_id}/multi-stream-input` and
//! `.../stream-input` ([`crate::dialects::codec::upgrade`]): the voice and the `output_format`
//! query become the session defaults (an unknown voice or format answers 400 before the
//! upgrade), word timestamps are on for every context, and ElevenLabs' codec runs on both
//! sides. The key comes as `xi-api-key`, `X-API-Key`, `Authorization: Bearer` or the `api_key`
//! query parameter (see [`crate::auth`]).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use vv_engine::EngineInfo;

use super::inbound::{translate, Contexts};
use super::outbound::Outbound;
use super::{output_format, MULTI_PATH, SINGLE_PATH};
use crate::dialects::codec::{upgrade, Translation};
use crate::error::ApiError;
use crate::state::AppState;
use crate::voice_alias::resolve_voice;
use crate::ws::messages::Configure;
use crate::ws::SessionConfig;

/// `GET /v1/text-to-speech/{voice_id}/multi-stream-input`.
pub async fn multi_stream_input(
    State(state): State<AppState>,
    Path(voice_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade_request: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    websocket(Contexts::Many, state, voice_id, query, upgrade_request)
}

/// `GET /v1/text-to-speech/{voice_id}/stream-input`.
pub async fn stream_input(
    State(state): State<AppState>,
    Path(voice_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade_request: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    websocket(Contexts::One, state, voice_id, query, upgrade_request)
}

fn websocket(
    contexts: Contexts,
    state: AppState,
    voice_id: String,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade_request: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let path = match contexts {
        Contexts::Many => MULTI_PATH,
        Contexts::One => SINGLE_PATH,
    };
    upgrade(
        path,
        state,
        query,
        upgrade_request,
        |defaults, query, info| {
            let defaults = session_defaults(defaults, &voice_id, query, info)?;
            let mut codec = Outbound::new(contexts);
            Ok(Translation {
                defaults,
                inbound: move |item| translate(contexts, item),
                outbound: move |item| codec.translate(item),
            })
        },
    )
}

/// The session defaults for `voice_id` and the query's `output_format`.
fn session_defaults(
    defaults: SessionConfig,
    voice_id: &str,
    query: &HashMap<String, String>,
    info: &EngineInfo,
) -> Result<SessionConfig, ApiError> {
    let voice = resolve_voice(info, Some(voice_id))?;
    let format = output_format(query.get("output_format").map(String::as_str))?;
    let request = Configure {
        voice: Some(voice),
        encoding: Some(format.encoding.to_string()),
        sample_rate: Some(format.sample_rate),
        bit_rate: format.bit_rate,
        timestamps: Some(true),
        ..Configure::default()
    };
    let (config, _) = defaults
        .configure(&request, info)
        .map_err(|e| ApiError::invalid("output_format", e.to_string()))?;
    Ok(config)
}
