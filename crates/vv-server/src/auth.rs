//! Optional API keys. When keys are configured every route except the probes (`/health`,
//! `/ready`), the Prometheus scrape (`/metrics`) and the web page (`/`) needs
//! `Authorization: Bearer <key>`; upgrades on the WebSocket routes (`/v1/tts/stream`,
//! `/stream`), and only there, may pass the key as the `api_key` query parameter instead
//! (browsers cannot set headers on WebSockets), as may Cartesia's `/tts/websocket` and
//! ElevenLabs' `/v1/text-to-speech/{voice_id}/multi-stream-input` and `.../stream-input`.
//! Cartesia's `X-API-Key: <key>` and ElevenLabs' `xi-api-key: <key>` headers are accepted
//! wherever `Authorization` is. `/metrics` needs a key
//! only when `metrics_api_keys` are configured (then one of those or an API key). Failures get
//! 401 with the JSON error body.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Settings;
use crate::error::ApiError;
use crate::state::AppState;

/// Paths served without a key.
pub const PUBLIC_PATHS: [&str; 3] = ["/health", "/ready", "/"];

/// The Prometheus scrape: public unless `metrics_api_keys` are configured.
pub const METRICS_PATH: &str = "/metrics";

/// Routes whose WebSocket upgrades may carry the key as the `api_key` query parameter.
pub const WEBSOCKET_PATHS: [&str; 3] =
    [crate::ws::PATH, "/stream", crate::dialects::cartesia::PATH];

/// The header Cartesia's clients send the key in, accepted on every route like
/// `Authorization: Bearer`.
pub const X_API_KEY: &str = "x-api-key";

/// The header ElevenLabs' clients send the key in, accepted on every route like
/// `Authorization: Bearer`.
pub const XI_API_KEY: &str = "xi-api-key";

/// Middleware: lets the request through when its path needs no key or a configured key is
/// presented; else answers 401.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let settings = state.settings();
    let path = request.uri().path();
    if !needs_key(settings, path) {
        return next.run(request).await;
    }
    let presented = bearer_token(request.headers())
        .or_else(|| header_key(request.headers()))
        .or_else(|| {
            (accepts_query_key(path) && is_websocket_upgrade(request.headers()))
                .then(|| query_api_key(request.uri()))
                .flatten()
        });
    match presented {
        Some(key) if accepts(settings, path, &key) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// Whether upgrades on `path` may carry the key as the `api_key` query parameter.
fn accepts_query_key(path: &str) -> bool {
    WEBSOCKET_PATHS.contains(&path) || crate::dialects::elevenlabs::is_websocket_path(path)
}

/// Whether a request for `path` must present a key.
fn needs_key(settings: &Settings, path: &str) -> bool {
    if path == METRICS_PATH {
        !settings.metrics_api_keys.is_empty()
    } else {
        !settings.api_keys.is_empty() && !PUBLIC_PATHS.contains(&path)
    }
}

/// Whether `key` opens `path`: an API key opens everything, a metrics key `/metrics` only.
/// Both lists are always checked, so the time taken does not tell which one matched.
fn accepts(settings: &Settings, path: &str, key: &str) -> bool {
    let api = settings.api_keys.accepts(key);
    let metrics = settings.metrics_api_keys.accepts(key);
    api | (metrics & (path == METRICS_PATH))
}

/// The key of an `X-API-Key` or `xi-api-key` header.
fn header_key(headers: &HeaderMap) -> Option<String> {
    [X_API_KEY, XI_API_KEY].iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?;
        Some(value.trim().to_string()).filter(|k| !k.is_empty())
    })
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The (percent-decoded) `api_key` query parameter.
fn query_api_key(uri: &Uri) -> Option<String> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.get("api_key").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  k1 "),
        );
        assert_eq!(bearer_token(&h).as_deref(), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(bearer_token(&h).as_deref(), Some("k2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        assert_eq!(header_key(&h), None);
        h.insert(X_API_KEY, HeaderValue::from_static(" k3 "));
        assert_eq!(header_key(&h).as_deref(), Some("k3"));
        h.remove(X_API_KEY);
        h.insert(XI_API_KEY, HeaderValue::from_static("k4"));
        assert_eq!(header_key(&h).as_deref(), Some("k4"));
    }

    #[test]
    fn elevenlabs_websockets_take_the_query_key() {
        assert!(accepts_query_key(
            "/v1/text-to-speech/alloy/multi-stream-input"
        ));
        assert!(accepts_query_key("/v1/text-to-speech/alloy/stream-input"));
        assert!(accepts_query_key("/tts/websocket"));
        assert!(!accepts_query_key("/v1/text-to-speech/alloy/stream"));
        assert!(!accepts_query_key("/v1/audio/speech"));
    }

    #[test]
    fn query_key_is_decoded() {
        let uri: Uri = "/stream?text=hi&api_key=a%2Bb%20c".parse().unwrap();
        assert_eq!(query_api_key(&uri).as_deref(), Some("a+b c"));
        let uri: Uri = "/stream?text=hi".parse().unwrap();
        assert_eq!(query_api_key(&uri), None);
    }
}
