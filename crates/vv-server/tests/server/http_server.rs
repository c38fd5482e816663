//! The real server with the tiny model: readiness, information routes, metrics, API keys,
//! load failure and draining on shutdown.

use std::time::Duration;

use crate::common::{
    collect, error_code, json_request, parse_wav, send, PromText, TestServer, VOICE,
};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vv_device::DeviceRequest;
use vv_server::config::ApiKeys;

fn speech(text: &str) -> serde_json::Value {
    json!({"model": "tts-1", "input": text, "voice": VOICE, "response_format": "wav", "seed": 7})
}

#[tokio::test]
async fn health_at_once_ready_after_warmup() {
    let server = TestServer::start(|_| {}).await;
    let (status, _, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    let (first, body) = server.get_json("/ready").await;
    assert_eq!(
        first,
        StatusCode::SERVICE_UNAVAILABLE,
        "ready before the model loaded: {body}"
    );
    assert_eq!(body["status"], "loading");
    server.wait_ready().await;
    let (status, body) = server.get_json("/ready").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    assert!(
        server.state.metrics().warmup_seconds.get() > 0.0,
        "warmup ran"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn info_voices_models_and_config() {
    let server =
        TestServer::ready(|s| s.limits.max_slots = vv_server::config::MaxSlots::Fixed(3)).await;
    let (status, info) = server.get_json("/api/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["status"], "ready");
    assert_eq!(info["device"]["device"], "cpu");
    assert_eq!(info["device"]["dtype"], "f32");
    assert!(!info["device"]["reason"].as_str().unwrap().is_empty());
    assert!(!info["device"]["dtype_reason"].as_str().unwrap().is_empty());
    assert_eq!(info["voices"], json!([VOICE]));
    assert_eq!(info["slots"], json!({"used": 0, "total": 3}));
    assert_eq!(info["model"]["sample_rate"], 24_000);
    assert_eq!(info["build"]["version"], env!("CARGO_PKG_VERSION"));

    let (_, voices) = server.get_json("/v1/audio/voices").await;
    assert_eq!(voices["object"], "list");
    assert_eq!(voices["data"][0]["id"], VOICE);
    assert_eq!(voices["data"][0]["aliases"].as_array().unwrap().len(), 13);
    assert_eq!(voices["default_voice"], VOICE);

    let (_, models) = server.get_json("/v1/models").await;
    let ids: Vec<_> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert!(ids.contains(&json!("tts-1")) && ids.contains(&json!("vibevoice-realtime-0.5b")));

    let (status, config) = server.get_json("/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config, json!({"voices": [VOICE], "default_voice": VOICE}));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn auto_device_serves_audio() {
    let server = TestServer::start_on(DeviceRequest::Auto, |_| {}).await;
    server.wait_ready().await;
    let (_, info) = server.get_json("/api/info").await;
    assert_eq!(info["device"]["request"], "auto");
    let (status, _, body) = server
        .post_json("/v1/audio/speech", &speech("Auto device check."))
        .await;
    assert_eq!(status, StatusCode::OK);
    let wav = parse_wav(&body);
    assert_eq!(wav.sample_rate, 24_000);
    assert!(body.len() > wav.data_offset);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_scrape_parses_and_has_every_family() {
    let server = TestServer::ready(|_| {}).await;
    let (status, _, _) = server
        .post_json("/v1/audio/speech", &speech("Metrics, please."))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = server
        .post_json("/v1/audio/speech", &json!({"input": ""}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.wait_idle().await;

    let (status, headers, body) = server.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let prom = PromText::parse(std::str::from_utf8(&body).unwrap());
    let families = [
        ("vibevoice_requests_total", "counter"),
        ("vibevoice_ws_sessions_active", "gauge"),
        ("vibevoice_contexts_active", "gauge"),
        ("vibevoice_contexts_total", "counter"),
        ("vibevoice_ttfa_seconds", "histogram"),
        ("vibevoice_queue_wait_seconds", "histogram"),
        ("vibevoice_first_audio_hold_seconds", "histogram"),
        ("vibevoice_engine_step_seconds", "histogram"),
        ("vibevoice_engine_batch_size", "histogram"),
        ("vibevoice_slots_used", "gauge"),
        ("vibevoice_slots_total", "gauge"),
        ("vibevoice_rtf", "histogram"),
        ("vibevoice_audio_seconds_total", "counter"),
        ("vibevoice_text_starved_steps_total", "counter"),
        ("vibevoice_errors_total", "counter"),
        ("vibevoice_device_memory_used_bytes", "gauge"),
        ("vibevoice_device_memory_total_bytes", "gauge"),
        ("vibevoice_model_load_seconds", "gauge"),
        ("vibevoice_warmup_seconds", "gauge"),
        ("vibevoice_build_info", "gauge"),
        ("vibevoice_runtime_alive_tasks", "gauge"),
        ("vibevoice_process_heap_in_use_bytes", "gauge"),
        ("vibevoice_kv_cache_bytes", "gauge"),
    ];
    for (family, kind) in families {
        assert_eq!(
            prom.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    // The live heap of this test process (server and tests share it): some, not absurd.
    let heap = prom.value("vibevoice_process_heap_in_use_bytes", &[]);
    assert!(heap > 1e5 && heap < 1e11, "heap in use {heap}");
    let ok = [("route", "/v1/audio/speech"), ("status", "200")];
    assert_eq!(prom.value("vibevoice_requests_total", &ok), 1.0);
    assert_eq!(
        prom.value("vibevoice_errors_total", &[("code", "empty_input")]),
        1.0
    );
    assert_eq!(
        prom.value("vibevoice_contexts_total", &[("outcome", "done")]),
        1.0
    );
    assert_eq!(prom.value("vibevoice_contexts_active", &[]), 0.0);
    assert_eq!(prom.value("vibevoice_ttfa_seconds_count", &[]), 1.0);
    assert_eq!(prom.value("vibevoice_rtf_count", &[]), 1.0);
    assert!(prom.value("vibevoice_audio_seconds_total", &[]) > 0.0);
    assert!(prom.value("vibevoice_engine_step_seconds_count", &[]) > 0.0);
    assert_eq!(prom.value("vibevoice_slots_total", &[]), 4.0);
    assert_eq!(prom.value("vibevoice_slots_used", &[]), 0.0);
    assert_eq!(
        prom.value("vibevoice_kv_cache_bytes", &[]),
        0.0,
        "no utterance left"
    );
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("device", "cpu"),
        ("dtype", "f32"),
    ];
    assert_eq!(prom.value("vibevoice_build_info", &build), 1.0);
    let cpu = [("backend", "cpu"), ("device", "cpu")];
    assert!(prom.value("vibevoice_device_memory_total_bytes", &cpu) > 0.0);
    assert!(prom.value("vibevoice_device_memory_used_bytes", &cpu) > 0.0);
    assert!(
        prom.find("vibevoice_device_utilization_percent", &[])
            .is_empty(),
        "no CPU utilisation is exported"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn api_keys_are_enforced() {
    let server = TestServer::ready(|s| s.api_keys = ApiKeys::new(["s3cret"])).await;
    let with_key = |key: Option<&str>| {
        let mut req = json_request("/v1/audio/speech", &speech("Key check."));
        if let Some(key) = key {
            req.headers_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        req
    };
    let (status, headers, body) = collect(send(server.addr, with_key(None)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(error_code(&body), "invalid_api_key");
    let (status, _, body) = collect(send(server.addr, with_key(Some("wrong"))).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key".into())
    );
    let (status, _, body) = collect(send(server.addr, with_key(Some("s3cret"))).await).await;
    assert_eq!(status, StatusCode::OK);
    parse_wav(&body);

    // Probes and the scrape stay open.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(server.get(path).await.0, StatusCode::OK, "{path}");
    }
    assert_eq!(server.get("/v1/models").await.0, StatusCode::UNAUTHORIZED);

    // WebSockets: refused before the upgrade without a key, accepted with `api_key`.
    let url = server.ws_url("/stream?text=Hello%20there");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected a 401 before the upgrade, got {other:?}"),
    }
    let mut bearer = url.as_str().into_client_request().unwrap();
    bearer
        .headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(bearer).await.unwrap();
    drop(ws);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&api_key=s3cret"))
        .await
        .unwrap();
    assert!(ws.next().await.unwrap().unwrap().is_text());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_model_that_fails_to_load_stops_the_server_with_an_error() {
    let server = TestServer::start(|s| s.model = "/nonexistent/vibevoice-model".to_string()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !server.is_finished() {
        assert!(std::time::Instant::now() < deadline, "server kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = server.stop().await.unwrap_err();
    assert_eq!(err.code(), "model_load_failed", "{err}");
}

#[tokio::test]
async fn shutdown_drains_in_flight_speech_then_exits_cleanly() {
    let mut server = TestServer::ready(|s| s.limits.shutdown_grace_secs = 60).await;
    let long = "This utterance is in flight while the service is asked to stop. ".repeat(4);
    let response = send(
        server.addr,
        json_request("/v1/audio/speech", &speech(&long)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..4], b"RIFF");

    server.signal_shutdown();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ready) = server.get_json("/ready").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(ready["status"], "draining");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready stayed 200 while draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, headers, refused) = server
        .post_json("/v1/audio/speech", &speech("Too late."))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(error_code(&refused), "shutting_down");

    // The in-flight response still completes normally.
    let rest = body
        .collect()
        .await
        .expect("the in-flight body completes")
        .to_bytes();
    let whole = [first, rest].concat();
    let wav = parse_wav(&whole);
    assert_eq!((whole.len() - wav.data_offset) % 2, 0);
    assert!(whole.len() > wav.data_offset);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let server = TestServer::ready(|s| {
        s.limits.max_text_chars = 10;
        s.limits.max_message_bytes = 1024;
    })
    .await;
    let big = Bytes::from(vec![b' '; 70_000]);
    let req = Request::post("/v1/audio/speech")
        .body(Full::new(big))
        .unwrap();
    let (status, _, body) = collect(send(server.addr, req).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "request_too_large");
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
    server.stop().await.unwrap();
}

#[test]
fn prom_parser_reads_labels_and_escapes() {
    let text = "# HELP x_total help\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\\\\\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let p = PromText::parse(text);
    assert_eq!(p.value("x_total", &[("b", "q\"\\")]), 3.0);
    assert_eq!(p.value("h_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(p.types["h"], "histogram");
}
