//! The router: every route of the service behind the shared layers (request ids, request
//! metrics and rate-limited logs of refusals, panic catching, origin checks and CORS, API
//! keys, body size limit). New route groups join at the merge point in [`app`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::FutureExt;
use tracing::{error, warn};

use crate::auth::require_api_key;
use crate::error::{ApiError, ErrorCode};
use crate::log_limit::LogLimit;
use crate::origin::check_origin;
use crate::routes;
use crate::state::AppState;

/// At most one WARN line per this interval for refused authentication, and one for 503s.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Route label for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The whole service as one router.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(routes::router())
        .merge(crate::ws::router())
        .merge(crate::dialects::router())
        .merge(crate::page::router());
    // Merge point: further route groups (the v1 WebSocket protocol, the web page) join here.
    with_layers(routes, state)
}

/// Applies the shared layers to `routes` and binds the state. Outermost first: the request id
/// (`X-Request-Id`, the `request` span), request and error metrics (and refusal logs), panic catching, origin checks and CORS, API keys, body
/// size limit.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limit = body_limit(&state);
    let logs = Arc::new(RefusalLogs::new(REFUSAL_LOG_INTERVAL));
    routes
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), check_origin))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(
            (state.clone(), logs),
            record_request,
        ))
        .layer(middleware::from_fn(crate::trace::request_id_layer))
        .with_state(state)
}

/// Rate limits of the WARN lines for responses a client can cause at will.
struct RefusalLogs {
    unauthorized: LogLimit,
    unavailable: LogLimit,
}

impl RefusalLogs {
    fn new(interval: Duration) -> Self {
        Self {
            unauthorized: LogLimit::new(interval),
            unavailable: LogLimit::new(interval),
        }
    }

    /// Logs a 401 or a 503 (overloaded, not ready, draining), at most once per interval
    /// each, with the count of those left unlogged since the previous line.
    fn record(&self, route: &str, status: StatusCode, code: &'static str) {
        let limit = match status {
            StatusCode::UNAUTHORIZED => &self.unauthorized,
            StatusCode::SERVICE_UNAVAILABLE => &self.unavailable,
            _ => return,
        };
        if let Some(suppressed) = limit.allow() {
            warn!(route, code, suppressed, "request refused");
        }
    }
}

/// Largest accepted request body: `max_message_bytes`, or more when the text limit needs it
/// (6 bytes per character covers JSON `\uXXXX` escapes, plus room for the other fields).
pub fn body_limit(state: &AppState) -> usize {
    let limits = &state.settings().limits;
    limits
        .max_message_bytes
        .max(limits.max_text_chars.saturating_mul(6).saturating_add(4096))
}

/// Counts every response in `requests_total{route,status}` and error responses in
/// `errors_total{code}`; logs refusals (401, 503) rate-limited.
async fn record_request(
    State((state, logs)): State<(AppState, Arc<RefusalLogs>)>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics.record_request(&route, response.status().as_u16());
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        metrics.record_error(code);
        logs.record(&route, response.status(), code);
    }
    response
}

/// Turns a panic inside a handler into a 500 `internal_error` response.
async fn catch_panic(request: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!(%message, "handler panicked");
            ApiError::Internal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AllowedOrigins, ApiKeys, Settings};
    use axum::body::Body;
    use axum::http::{header, StatusCode};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn state_with(settings: Settings) -> AppState {
        AppState::new(settings).unwrap()
    }

    async fn json_body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn panics_become_500_and_are_counted() {
        let state = state_with(Settings::default());
        let routes = Router::new().route("/boom", get(|| async { panic!("kaboom") as &str }));
        let router = with_layers(routes, state.clone());
        for _ in 0..2 {
            let response = router
                .clone()
                .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(json_body(response).await["error"]["code"], "internal_error");
        }
        let m = state.metrics();
        assert_eq!(
            m.errors_total.with_label_values(&["internal_error"]).get(),
            2
        );
        assert_eq!(
            m.requests_total.with_label_values(&["/boom", "500"]).get(),
            2
        );
    }

    #[tokio::test]
    async fn unknown_routes_get_a_json_404() {
        let state = state_with(Settings::default());
        let response = app(state.clone())
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_body(response).await["error"]["code"], "not_found");
        let m = state.metrics();
        assert_eq!(
            m.requests_total
                .with_label_values(&[UNMATCHED_ROUTE, "404"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn wrong_methods_get_a_json_405() {
        let state = state_with(Settings::default());
        let response = app(state)
            .oneshot(
                Request::get("/v1/audio/speech")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            json_body(response).await["error"]["code"],
            "method_not_allowed"
        );
    }

    #[tokio::test]
    async fn api_keys_guard_everything_but_public_paths() {
        let settings = Settings {
            api_keys: ApiKeys::new(["k1", "k2"]),
            ..Settings::default()
        };
        let state = state_with(settings);
        let router = app(state.clone());
        let call = |req: Request| router.clone().oneshot(req);

        let r = call(Request::get("/v1/models").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(json_body(r).await["error"]["code"], "invalid_api_key");

        let wrong = Request::get("/v1/models")
            .header(header::AUTHORIZATION, "Bearer nope")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(wrong).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );

        let good = Request::get("/v1/models")
            .header(header::AUTHORIZATION, "Bearer k2")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(good).await.unwrap().status(), StatusCode::OK);

        // The query parameter only counts for WebSocket upgrades of the WebSocket routes.
        let query = Request::get("/v1/models?api_key=k1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(query).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let upgrade = |uri: &str| {
            Request::get(uri)
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, "websocket")
                .body(Body::empty())
                .unwrap()
        };
        for uri in ["/v1/models?api_key=k1", "/config?api_key=k1"] {
            let r = call(upgrade(uri)).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        }
        for uri in ["/v1/tts/stream?api_key=k1", "/stream?api_key=k1"] {
            let r = call(upgrade(uri)).await.unwrap();
            assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        }

        for path in ["/health", "/metrics"] {
            let r = call(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
        }
        let r = call(Request::get("/ready").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            state
                .metrics()
                .errors_total
                .with_label_values(&["invalid_api_key"])
                .get(),
            5
        );
    }

    #[tokio::test]
    async fn metrics_keys_guard_only_the_scrape() {
        let settings = Settings {
            api_keys: ApiKeys::new(["api"]),
            metrics_api_keys: ApiKeys::new(["scrape"]),
            ..Settings::default()
        };
        let router = app(state_with(settings));
        let call = |path: &str, key: Option<&str>| {
            let mut request = Request::get(path);
            if let Some(key) = key {
                request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            router.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let status = |r: Result<Response, std::convert::Infallible>| r.unwrap().status();
        assert_eq!(
            status(call("/metrics", None).await),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(call("/metrics", Some("nope")).await),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(call("/metrics", Some("scrape")).await),
            StatusCode::OK
        );
        assert_eq!(status(call("/metrics", Some("api")).await), StatusCode::OK);
        assert_eq!(
            status(call("/v1/models", Some("scrape")).await),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(call("/health", None).await), StatusCode::OK);
        // Without metrics keys the scrape stays public, whatever the API keys.
        let public = app(state_with(Settings {
            api_keys: ApiKeys::new(["api"]),
            ..Settings::default()
        }));
        let r = public
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn foreign_origins_get_403_and_allowed_ones_cors() {
        let settings = Settings {
            api_keys: ApiKeys::new(["k"]),
            allowed_origins: AllowedOrigins::parse(["http://demo.test:3000"]).unwrap(),
            ..Settings::default()
        };
        let router = app(state_with(settings));
        let call = |request: Request| router.clone().oneshot(request);
        let upgrade = |origin: &str| {
            Request::get("/v1/tts/stream?api_key=k")
                .header(header::HOST, "127.0.0.1:8000")
                .header(header::ORIGIN, origin)
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, "websocket")
                .body(Body::empty())
                .unwrap()
        };
        for foreign in ["http://evil.test", "http://127.0.0.1:8001", "null"] {
            let r = call(upgrade(foreign)).await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{foreign}");
            assert_eq!(json_body(r).await["error"]["code"], "origin_not_allowed");
        }
        for fine in ["http://127.0.0.1:8000", "http://demo.test:3000"] {
            let r = call(upgrade(fine)).await.unwrap();
            assert_ne!(r.status(), StatusCode::FORBIDDEN, "{fine}");
        }
        // Preflight from the allowed origin: answered before the key check.
        let preflight = Request::options("/config")
            .header(header::ORIGIN, "http://demo.test:3000")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap();
        let r = call(preflight).await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://demo.test:3000"
        );
        assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("authorization"));
        let foreign_preflight = Request::options("/config")
            .header(header::ORIGIN, "http://evil.test")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(foreign_preflight).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        // Actual requests from the allowed origin carry the CORS headers, errors included.
        let get = Request::get("/v1/models")
            .header(header::ORIGIN, "http://demo.test:3000")
            .header(header::AUTHORIZATION, "Bearer k")
            .body(Body::empty())
            .unwrap();
        let r = call(get).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://demo.test:3000"
        );
        let unauthorized = Request::get("/v1/models")
            .header(header::ORIGIN, "http://demo.test:3000")
            .body(Body::empty())
            .unwrap();
        let r = call(unauthorized).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        // No Origin (non-browser clients): no check, no CORS headers.
        let plain = Request::get("/health").body(Body::empty()).unwrap();
        let r = call(plain).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    /// Counts the WARN events sent to it.
    struct WarnCounter(Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for WarnCounter {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test]
    async fn refused_requests_are_logged_at_most_once_per_interval() {
        let warns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let _guard = tracing::subscriber::set_default(WarnCounter(Arc::clone(&warns)));
        let settings = Settings {
            api_keys: ApiKeys::new(["k"]),
            ..Settings::default()
        };
        let routes =
            Router::new().route("/busy", get(|| async { ApiError::Overloaded { total: 1 } }));
        let router = with_layers(routes, state_with(settings));
        for _ in 0..20 {
            let busy = Request::get("/busy")
                .header(header::AUTHORIZATION, "Bearer k")
                .body(Body::empty())
                .unwrap();
            let r = router.clone().oneshot(busy).await.unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let denied = Request::get("/busy").body(Body::empty()).unwrap();
            let r = router.clone().oneshot(denied).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        // One line for the 401s and one for the 503s within the interval.
        assert_eq!(warns.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn oversized_bodies_get_413_json() {
        let state = state_with(Settings::default());
        let limit = body_limit(&state);
        let routes = Router::new().route(
            "/echo",
            post(|body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>| async move {
                body.map(|b| b.len().to_string())
                    .map_err(|e| ApiError::from_body_rejection(e, 1))
            }),
        );
        let router = with_layers(routes, state);
        let big = vec![b'x'; limit + 1];
        let r = router
            .clone()
            .oneshot(Request::post("/echo").body(Body::from(big)).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json_body(r).await["error"]["code"], "request_too_large");
        let ok = vec![b'x'; limit];
        let r = router
            .oneshot(Request::post("/echo").body(Body::from(ok)).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
