//! The router: every route of the service behind the shared layers (request metrics, panic
//! catching, API keys, body size limit). New route groups join at the merge point in [`app`].

use std::panic::AssertUnwindSafe;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::FutureExt;
use tracing::error;

use crate::auth::require_api_key;
use crate::error::{ApiError, ErrorCode};
use crate::routes;
use crate::state::AppState;

/// Route label for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The whole service as one router.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(routes::router())
        .merge(crate::ws::router())
        .merge(crate::page::router());
    // Merge point: further route groups (the v1 WebSocket protocol, the web page) join here.
    with_layers(routes, state)
}

/// Applies the shared layers to `routes` and binds the state. Outermost first: request and
/// error metrics, panic catching, API keys, body size limit.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limit = body_limit(&state);
    routes
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .with_state(state)
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
/// `errors_total{code}`.
async fn record_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics.record_request(&route, response.status().as_u16());
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        metrics.record_error(code);
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
    use crate::config::{ApiKeys, Settings};
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

        // The query parameter only counts for WebSocket upgrades.
        let query = Request::get("/v1/models?api_key=k1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(query).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );

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
            3
        );
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
