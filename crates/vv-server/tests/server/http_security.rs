//! Issue 12, security, against a real server on the tiny fixture: the `api_key` query
//! parameter only on WebSocket routes, the Origin allow-list (403 `origin_not_allowed` on
//! upgrades, CORS for an allowed page fetching `/config`) and the `max_diffusion_steps` cap on
//! every route that takes diffusion steps.

use crate::common;
use crate::common::{collect, error_code, json_request, send, TestServer};
use crate::ws_client;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vv_server::config::{AllowedOrigins, ApiKeys};

const DEMO_ORIGIN: &str = "http://demo.test:3000";

/// A GET on a fresh connection with extra `headers`.
async fn get_with(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = send(server.addr, request.body(Full::new(Bytes::new())).unwrap()).await;
    let (status, headers, body) = collect(response).await;
    (status.as_u16(), headers, body)
}

/// A WebSocket handshake on `path_and_query` with `origin`: `Ok(())` when it succeeds, else
/// the HTTP status and the body's error code.
async fn handshake(
    server: &TestServer,
    path_and_query: &str,
    origin: Option<&str>,
) -> Result<(), (u16, String)> {
    let mut request = ws_client::url(server.addr, path_and_query)
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let code = response
                .body()
                .as_deref()
                .map(error_code)
                .unwrap_or_default();
            Err((response.status().as_u16(), code))
        }
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_key_opens_websocket_routes_only() {
    let server = TestServer::ready(|s| s.api_keys = ApiKeys::new(["k1"])).await;
    let upgrade = [("connection", "upgrade"), ("upgrade", "websocket")];
    let (status, _, body) = get_with(&server, "/v1/models?api_key=k1", &upgrade).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "invalid_api_key");
    let (status, _, _) = get_with(&server, "/v1/audio/voices?api_key=k1", &upgrade).await;
    assert_eq!(status, 401);
    assert_eq!(
        handshake(&server, "/v1/tts/stream?api_key=k1", None).await,
        Ok(())
    );
    assert_eq!(
        handshake(&server, "/stream?text=&api_key=k1", None).await,
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_checked_and_an_allowed_page_can_fetch_the_config() {
    let server = TestServer::ready(|s| {
        s.allowed_origins = AllowedOrigins::parse([DEMO_ORIGIN]).unwrap();
    })
    .await;
    let own = format!("http://{}", server.addr);
    for path in ["/v1/tts/stream", "/stream?text="] {
        assert_eq!(
            handshake(&server, path, Some("http://evil.test")).await,
            Err((403, "origin_not_allowed".to_string())),
            "{path}"
        );
        for fine in [None, Some(own.as_str()), Some(DEMO_ORIGIN)] {
            assert_eq!(
                handshake(&server, path, fine).await,
                Ok(()),
                "{path} {fine:?}"
            );
        }
    }
    // The official demo page, served from DEMO_ORIGIN, fetches /config.
    let (status, headers, body) = get_with(&server, "/config", &[("origin", DEMO_ORIGIN)]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], DEMO_ORIGIN);
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["default_voice"], common::VOICE);
    let preflight = [
        ("origin", DEMO_ORIGIN),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let mut request = Request::options("/v1/audio/speech");
    for (name, value) in preflight {
        request = request.header(name, value);
    }
    let response = send(server.addr, request.body(Full::new(Bytes::new())).unwrap()).await;
    let (status, headers, _) = collect(response).await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], DEMO_ORIGIN);
    let (status, headers, body) =
        get_with(&server, "/config", &[("origin", "http://evil.test")]).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&body), "origin_not_allowed");
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diffusion_steps_above_the_cap_are_refused_on_every_route() {
    let server = TestServer::ready(|s| s.limits.max_diffusion_steps = 3).await;
    let over = json!({"input": "Hi.", "diffusion_steps": 4});
    let response = send(server.addr, json_request("/v1/audio/speech", &over)).await;
    let (status, _, body) = collect(response).await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["param"], "diffusion_steps");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_diffusion_steps"));
    let at = json!({"input": "Hi.", "diffusion_steps": 3});
    let response = send(server.addr, json_request("/v1/audio/speech", &at)).await;
    assert_eq!(collect(response).await.0, 200);

    assert_eq!(
        handshake(&server, "/stream?text=Hi&steps=4", None).await,
        Err((400, "invalid_request".to_string()))
    );

    let mut client = ws_client::connect(server.addr, "").await;
    assert_eq!(client.ready["limits"]["max_diffusion_steps"], 3);
    client
        .send(json!({"type": "session.configure", "diffusion_steps": 4}))
        .await;
    let error = client.error().await;
    assert_eq!(error["code"], "invalid_value");
    assert_eq!(error["fatal"], false);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("max_diffusion_steps"));
    let (configured, _) = client.configure(json!({"diffusion_steps": 3})).await;
    assert_eq!(configured["diffusion_steps"], 3);
}
