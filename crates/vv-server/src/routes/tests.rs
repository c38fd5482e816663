//! Route behaviour before the engine is loaded, through `oneshot` (no model needed).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tower::ServiceExt;

use crate::app::app;
use crate::config::Settings;
use crate::state::AppState;

async fn call(state: &AppState, request: Request<Body>) -> Response {
    app(state.clone()).oneshot(request).await.unwrap()
}

async fn get(state: &AppState, path: &str) -> Response {
    call(state, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn json(response: Response) -> Value {
    serde_json::from_str(&body_text(response).await).unwrap()
}

fn loading() -> AppState {
    AppState::new(Settings::default()).unwrap()
}

#[tokio::test]
async fn health_is_up_and_ready_is_not_while_loading() {
    let state = loading();
    let r = get(&state, "/health").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["status"], "ok");
    let r = get(&state, "/ready").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(r).await["status"], "loading");
    state.start_draining();
    let r = get(&state, "/ready").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(r).await["status"], "draining");
}

#[tokio::test]
async fn info_shows_build_while_loading() {
    let r = get(&loading(), "/api/info").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert_eq!(v["status"], "loading");
    assert_eq!(v["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["build"]["features"].is_array());
    let allocator = v["build"]["allocator"].as_str().unwrap();
    assert!(
        ["jemalloc", "jemalloc+glibc", "glibc", "system"].contains(&allocator),
        "{allocator}"
    );
    assert!(v["model"].is_null());
}

#[tokio::test]
async fn models_list_and_retrieve() {
    let state = loading();
    let v = json(get(&state, "/v1/models").await).await;
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "vibevoice-realtime-0.5b",
            "tts-1",
            "tts-1-hd",
            "gpt-4o-mini-tts"
        ]
    );
    assert_eq!(
        json(get(&state, "/v1/models/tts-1").await).await["object"],
        "model"
    );
    let r = get(&state, "/v1/models/whisper-1").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(r).await["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn engine_routes_answer_503_with_retry_after_while_loading() {
    let state = loading();
    for path in ["/v1/audio/voices", "/config"] {
        let r = get(&state, path).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(json(r).await["error"]["code"], "not_ready");
    }
    let speech = Request::post("/v1/audio/speech")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"model":"tts-1","input":"Hello","voice":"alloy"}"#,
        ))
        .unwrap();
    let r = call(&state, speech).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(r).await["error"]["code"], "not_ready");
}

#[tokio::test]
async fn bad_speech_bodies_are_rejected_before_the_engine_is_needed() {
    let state = loading();
    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            r#"{"input": 3}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (r#"{"input": ""}"#, StatusCode::BAD_REQUEST, "empty_input"),
        (
            r#"{"input": "hi", "response_format": "aac"}"#,
            StatusCode::BAD_REQUEST,
            "unsupported_format",
        ),
        (
            r#"{"input": "hi", "speed": 8}"#,
            StatusCode::BAD_REQUEST,
            "unsupported_speed",
        ),
    ];
    for (body, status, code) in cases {
        let req = Request::post("/v1/audio/speech")
            .body(Body::from(body))
            .unwrap();
        let r = call(&state, req).await;
        assert_eq!(r.status(), status, "{body}");
        let v = json(r).await;
        assert_eq!(v["error"]["code"], code, "{body}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let m = state.metrics();
    assert_eq!(
        m.errors_total
            .with_label_values(&["unsupported_speed"])
            .get(),
        1
    );
    assert_eq!(
        m.requests_total
            .with_label_values(&["/v1/audio/speech", "400"])
            .get(),
        5
    );
}

#[tokio::test]
async fn stream_without_upgrade_is_a_json_400() {
    let r = get(&loading(), "/stream?text=hi").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn metrics_scrape_is_prometheus_text() {
    let state = loading();
    get(&state, "/health").await;
    let r = get(&state, "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = body_text(r).await;
    assert!(
        text.contains("vibevoice_requests_total{route=\"/health\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE vibevoice_ttfa_seconds histogram"));
    // CPU statistics exist only once an engine (and its device) is installed.
    assert!(!text.contains("vibevoice_device_memory_total_bytes{"));
}
