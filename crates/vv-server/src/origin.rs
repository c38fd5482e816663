//! Origin checks and CORS. Browsers send `Origin` with WebSocket upgrades and with
//! cross-origin requests; a request whose origin is neither the server's own (the origin's
//! host and port equal the `Host` header) nor on `allowed_origins` is refused with 403
//! `origin_not_allowed`, so that no other web page can drive this server (cross-site
//! WebSocket hijacking, blind cross-site requests). Requests without `Origin` (non-browser
//! clients, same-origin navigations) pass.
//!
//! Requests from an allowed origin get the CORS response headers, and their preflights
//! (`OPTIONS` with `Access-Control-Request-Method`) are answered here, before the API key
//! check: browsers send no credentials in a preflight.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::AllowedOrigins;
use crate::error::ApiError;
use crate::state::AppState;

/// Methods a cross-origin page may use.
const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// Request headers a cross-origin page may send.
const ALLOW_HEADERS: &str =
    "authorization, content-type, x-api-key, cartesia-version, x-request-id";
/// Response headers a cross-origin page may read besides the simple ones.
const EXPOSE_HEADERS: &str = "retry-after, x-request-id";
/// Seconds a browser may cache a preflight's answer.
const MAX_AGE_SECS: &str = "600";

/// Middleware: refuses foreign origins, answers preflights and adds the CORS headers.
pub async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let host = host_of(&request);
    let allowed = origin
        .to_str()
        .is_ok_and(|o| is_allowed(o, host.as_deref(), &state.settings().allowed_origins));
    if !allowed {
        return ApiError::OriginNotAllowed.into_response();
    }
    if is_preflight(&request) {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        add_cors_headers(headers, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECS),
        );
        return response;
    }
    let mut response = next.run(request).await;
    add_cors_headers(response.headers_mut(), origin);
    response
}

/// Whether `origin` may use this server whose `Host` is `host`.
pub fn is_allowed(origin: &str, host: Option<&str>, list: &AllowedOrigins) -> bool {
    let same_origin = origin
        .split_once("://")
        .zip(host)
        .is_some_and(|((_, authority), host)| {
            authority
                .trim_end_matches('/')
                .eq_ignore_ascii_case(host.trim())
        });
    same_origin || list.contains(origin)
}

/// The `Host` header, or the URI's authority (HTTP/2).
fn host_of(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()))
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn add_cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_or_listed() {
        let none = AllowedOrigins::default();
        assert!(is_allowed(
            "http://127.0.0.1:8000",
            Some("127.0.0.1:8000"),
            &none
        ));
        assert!(is_allowed(
            "https://TTS.example",
            Some("tts.example"),
            &none
        ));
        assert!(!is_allowed(
            "http://127.0.0.1:8001",
            Some("127.0.0.1:8000"),
            &none
        ));
        assert!(!is_allowed(
            "http://evil.test",
            Some("127.0.0.1:8000"),
            &none
        ));
        assert!(!is_allowed("null", Some("127.0.0.1:8000"), &none));
        assert!(!is_allowed("http://127.0.0.1:8000", None, &none));
        let list = AllowedOrigins::parse(["http://demo.test:3000"]).unwrap();
        assert!(is_allowed(
            "http://demo.test:3000",
            Some("127.0.0.1:8000"),
            &list
        ));
    }
}
