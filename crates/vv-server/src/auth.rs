//! Optional API keys. When keys are configured every route except the probes (`/health`,
//! `/ready`), the Prometheus scrape (`/metrics`) and the web page (`/`) needs
//! `Authorization: Bearer <key>`; WebSocket upgrades may pass the key as the `api_key` query
//! parameter instead (browsers cannot set headers on WebSockets). Failures get 401 with the
//! JSON error body.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Paths served without a key.
pub const PUBLIC_PATHS: [&str; 4] = ["/health", "/ready", "/metrics", "/"];

/// Middleware: lets the request through when keys are off, the path is public or a
/// configured key is presented; else answers 401.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let keys = &state.settings().api_keys;
    if keys.is_empty() || PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = bearer_token(request.headers()).or_else(|| {
        is_websocket_upgrade(request.headers())
            .then(|| query_api_key(request.uri()))
            .flatten()
    });
    match presented {
        Some(key) if keys.accepts(&key) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
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
    }

    #[test]
    fn query_key_is_decoded() {
        let uri: Uri = "/stream?text=hi&api_key=a%2Bb%20c".parse().unwrap();
        assert_eq!(query_api_key(&uri).as_deref(), Some("a+b c"));
        let uri: Uri = "/stream?text=hi".parse().unwrap();
        assert_eq!(query_api_key(&uri), None);
    }
}
