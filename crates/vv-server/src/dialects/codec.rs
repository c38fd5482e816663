//! What every dialect's WebSocket shares: the upgrade (the checks of `GET /v1/tts/stream`,
//! HTTP errors before the upgrade: 503 when not ready, draining or without a free slot), the
//! v1 session run with the dialect's codec on both sides, and the parsing of a dialect's JSON
//! requests into [`Incoming::Rejected`] when they do not fit, and the core's events and audio
//! frames as an outbound codec reads them.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::Query;
use axum::response::Response;
use futures::{stream, SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::debug;
use vv_audio::FrameHeader;
use vv_engine::EngineInfo;

use crate::error::ApiError;
use crate::state::AppState;
use crate::trace::Carry;
use crate::upgrade::{prepare, Upgrade};
use crate::ws::transport::adapt;
use crate::ws::{run_session, Incoming, Outgoing, SessionConfig, WsError};

/// One session's translation, chosen at the upgrade.
pub struct Translation<I, O> {
    /// The session defaults (from the service's and the upgrade's query).
    pub defaults: SessionConfig,
    /// Client message -> protocol v1 messages (or [`Incoming::Rejected`]).
    pub inbound: I,
    /// Core event or audio frame -> the dialect's messages.
    pub outbound: O,
}

/// Upgrades a dialect route at `path`: `translation` turns the service defaults and the query
/// into the session's [`Translation`] (its error answers the upgrade).
pub fn upgrade<I, O, F>(
    path: &str,
    state: AppState,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    translation: F,
) -> Result<Response, ApiError>
where
    I: FnMut(Incoming) -> Vec<Incoming> + Send + 'static,
    O: FnMut(Outgoing) -> Vec<Outgoing> + Send + 'static,
    F: FnOnce(
        SessionConfig,
        &HashMap<String, String>,
        &EngineInfo,
    ) -> Result<Translation<I, O>, ApiError>,
{
    let Upgrade {
        upgrade,
        query,
        engine,
    } = prepare(path, &state, query, upgrade)?;
    if !engine.has_free_slot() {
        return Err(ApiError::Overloaded {
            total: engine.slots_total(),
        });
    }
    let defaults = SessionConfig::defaults(state.settings(), engine.info());
    let Translation {
        defaults,
        mut inbound,
        mut outbound,
    } = translation(defaults, &query, engine.info())?;
    let carry = Carry::current();
    Ok(upgrade.on_upgrade(move |socket| {
        let (outgoing, incoming) = adapt(socket);
        let outgoing =
            outgoing.with_flat_map(move |item| stream::iter(outbound(item).into_iter().map(Ok)));
        let incoming = incoming.flat_map(move |item| stream::iter(inbound(item)));
        carry.wrap(run_session(state, engine, defaults, outgoing, incoming))
    }))
}

/// Parses a dialect request: not JSON is `invalid_json`, a JSON object of the wrong shape
/// `invalid_message`; both reported without a context.
pub fn parse_request<T: DeserializeOwned>(text: &str) -> Result<T, Incoming> {
    serde_json::from_str(text).map_err(|e| {
        let error = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => WsError::InvalidMessage(format!("invalid request: {e}")),
            _ => WsError::InvalidJson(e.to_string()),
        };
        Incoming::Rejected {
            context_id: None,
            error,
        }
    })
}

/// A core event as JSON (`None`, logged, for text that is not: never expected).
pub fn core_event(text: &str) -> Option<Value> {
    serde_json::from_str(text)
        .map_err(|e| debug!("unreadable core event: {e}"))
        .ok()
}

/// The contexts an outbound codec knows, by the number their audio frames carry, each with
/// the codec's own state `T`.
pub struct FrameContexts<T> {
    by_num: HashMap<u32, (String, T)>,
}

impl<T> Default for FrameContexts<T> {
    fn default() -> Self {
        Self {
            by_num: HashMap::new(),
        }
    }
}

impl<T> FrameContexts<T> {
    /// Records a `context.created` event (`None` when it lacks its id or number).
    pub fn created(&mut self, event: &Value, state: T) -> Option<()> {
        let id = event["context_id"].as_str()?.to_string();
        let num = u32::try_from(event["context_num"].as_u64()?).ok()?;
        self.by_num.insert(num, (id, state));
        Some(())
    }

    /// The context of an audio frame and its samples (`None` for unknown contexts and
    /// frames without samples).
    pub fn frame<'a>(&'a mut self, frame: &'a [u8]) -> Option<(&'a str, &'a mut T, &'a [u8])> {
        let (header, payload) = FrameHeader::decode(frame).ok()?;
        let (id, state) = self.by_num.get_mut(&header.context_num)?;
        (!payload.is_empty()).then_some((id.as_str(), state, payload))
    }

    /// The state of context `id`.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.by_num
            .values_mut()
            .find(|(known, _)| known == id)
            .map(|(_, state)| state)
    }

    /// Forgets context `id`, returning its state.
    pub fn forget(&mut self, id: &str) -> Option<T> {
        let num = *self.by_num.iter().find(|(_, (known, _))| known == id)?.0;
        self.by_num.remove(&num).map(|(_, state)| state)
    }
}

/// A binary audio frame of context `num` carrying `payload`, as the session core sends it (the
/// dialects' outbound tests feed it to their translators).
#[cfg(test)]
pub(super) fn test_frame(num: u32, payload: &[u8]) -> Outgoing {
    let header = vv_audio::FrameHeader {
        flags: 0,
        context_num: num,
        seq: 0,
        sample_offset: 0,
    };
    Outgoing::Binary(header.frame(payload))
}
