//! Issue 15's observability, end to end against the real server: `X-Request-Id` echoed or
//! generated (WebSocket upgrades included) and in error bodies; the stage histograms counted
//! after a request; and, with the OTLP export pointed at a tiny collector started here, the
//! `utterance` spans of HTTP, SSE, WebSocket v1 and demo requests arriving with their request
//! id (and context id) and their stage events in order. No timing is asserted.

#[path = "server/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{collect, json_request, send, PromText, TestServer, VOICE};
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const TEXT: &str = "Hello there, this is a short test of the timeline.";
const STAGES: [&str; 5] = [
    "admitted",
    "first_window",
    "first_frame",
    "first_byte",
    "last_byte",
];

/// Request bodies the collector received, as JSON.
type Received = Arc<Mutex<Vec<Value>>>;

/// One collector and one global subscriber (the export layer only) for the whole binary.
fn collector() -> &'static (String, Received) {
    static COLLECTOR: OnceLock<(String, Received)> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received: Received = Arc::default();
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (path, body) = read_request(&stream);
                assert_eq!(path, "/v1/traces");
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
            }
        });
        tracing_subscriber::registry()
            .with(vv_server::trace::otlp::layer(Some(&url)))
            .init();
        (url, received)
    })
}

/// The path and body of one HTTP/1.1 request with a `content-length`.
fn read_request(stream: &std::net::TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (path, body)
}

/// The exported spans whose `request_id` is `id` (waits up to 30 s for `count` of them).
fn spans_of(id: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans: Vec<Value> = collector()
            .1
            .lock()
            .unwrap()
            .iter()
            .flat_map(|body| {
                body["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|span| attribute(span, "request_id") == Some(json!({ "stringValue": id })))
            .collect();
        if spans.len() >= count || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn attribute(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
}

/// Asserts one finished utterance span with every stage event, in order.
fn assert_timeline(span: &Value) {
    assert_eq!(span["name"], "utterance");
    assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
    assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
    assert_eq!(
        attribute(span, "outcome"),
        Some(json!({"stringValue": "done"}))
    );
    assert!(attribute(span, "utterance_id").is_some(), "{span}");
    let events = span["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, STAGES, "{span}");
    let time = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    let mut times = vec![time(&span["startTimeUnixNano"])];
    times.extend(events.iter().map(|e| time(&e["timeUnixNano"])));
    times.push(time(&span["endTimeUnixNano"]));
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

fn speech_request(id: Option<&str>, body: &Value) -> Request<Full<Bytes>> {
    let mut request = json_request("/v1/audio/speech", body);
    if let Some(id) = id {
        request
            .headers_mut()
            .insert("x-request-id", id.parse().unwrap());
    }
    request
}

async fn server() -> TestServer {
    let url = collector().0.clone();
    TestServer::ready(move |s| s.otlp_endpoint = Some(url)).await
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_named_in_error_bodies() {
    let server = server().await;
    let get = |id: Option<&'static str>| {
        let mut request = Request::get("/health")
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Some(id) = id {
            request
                .headers_mut()
                .insert("x-request-id", id.parse().unwrap());
        }
        send(server.addr, request)
    };
    let response = get(Some("client-id_1.2")).await;
    assert_eq!(response.headers()["x-request-id"], "client-id_1.2");
    let long: &'static str = Box::leak("a".repeat(129).into_boxed_str());
    for id in [None, Some(long)] {
        let response = get(id).await;
        let generated = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(generated.len(), 32, "{generated}");
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    // Error bodies name the request: a bad body, an unknown route.
    let bad = speech_request(Some("err-7"), &json!({"input": ""}));
    let (status, headers, body) = collect(send(server.addr, bad).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["x-request-id"], "err-7");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["request_id"], "err-7");
    assert_eq!(body["error"]["code"], "empty_input");
    let (status, headers, body) = server.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["error"]["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn stage_histograms_are_counted_after_a_request() {
    let server = server().await;
    let body = json!({"input": TEXT, "voice": VOICE, "response_format": "pcm", "seed": 3});
    let (status, _, audio) = collect(send(server.addr, speech_request(None, &body)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!audio.is_empty());
    server.wait_idle().await;
    let (_, _, text) = server.get("/metrics").await;
    let prom = PromText::parse(std::str::from_utf8(&text).unwrap());
    assert_eq!(prom.types["vibevoice_stage_seconds"], "histogram");
    for stage in STAGES {
        let count = prom.value("vibevoice_stage_seconds_count", &[("stage", stage)]);
        assert!(count >= 1.0, "{stage}: {count}");
    }
    assert!(prom.value("vibevoice_queue_wait_seconds_count", &[]) >= 1.0);
}

#[tokio::test]
async fn http_and_sse_utterance_spans_are_exported_with_their_stages() {
    let server = server().await;
    for (id, format) in [("otlp-http-1", "audio"), ("otlp-sse-1", "sse")] {
        let body = json!({"input": TEXT, "voice": VOICE, "response_format": "pcm", "stream_format": format});
        let (status, headers, _) =
            collect(send(server.addr, speech_request(Some(id), &body)).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-request-id"], id);
        let spans = spans_of(id, 1);
        assert_eq!(spans.len(), 1, "{id}: {spans:?}");
        assert_timeline(&spans[0]);
    }
}

/// Opens `path` with `id` as the request id; checks the upgrade response echoes it.
async fn ws_connect(
    server: &TestServer,
    path: &str,
    id: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-request-id", id.parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], id);
    ws
}

/// Reads until a text message whose `type` (or demo `event`) is `kind` (30 s at most).
async fn read_until<S>(ws: &mut S, key: &str, kind: &str)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let wait = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message.unwrap() {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event[key] == kind {
                    return;
                }
            }
        }
        panic!("the socket ended before {kind}");
    });
    wait.await
        .unwrap_or_else(|_| panic!("no {kind} within 30 s"));
}

#[tokio::test]
async fn websocket_context_spans_carry_the_session_request_id_and_the_context_id() {
    let server = server().await;
    let id = "otlp-ws-1";
    let mut ws = ws_connect(&server, "/v1/tts/stream", id).await;
    for context in ["c1", "c2"] {
        let text = json!({"type": "text", "context_id": context, "text": TEXT});
        ws.send(Message::Text(text.to_string().into()))
            .await
            .unwrap();
        let close = json!({"type": "close", "context_id": context});
        ws.send(Message::Text(close.to_string().into()))
            .await
            .unwrap();
        read_until(&mut ws, "type", "context.done").await;
    }
    let mut spans = spans_of(id, 2);
    assert_eq!(spans.len(), 2, "{spans:?}");
    spans.sort_by_key(|s| attribute(s, "context_id").unwrap()["stringValue"].to_string());
    for (span, context) in spans.iter().zip(["c1", "c2"]) {
        assert_eq!(
            attribute(span, "context_id"),
            Some(json!({"stringValue": context}))
        );
        assert_timeline(span);
    }
}

#[tokio::test]
async fn demo_stream_spans_are_exported() {
    let server = server().await;
    let id = "otlp-demo-1";
    let query = format!(
        "/stream?text={}",
        TEXT.replace(' ', "%20").replace(',', "%2C")
    );
    let mut ws = ws_connect(&server, &query, id).await;
    read_until(&mut ws, "event", "backend_stream_complete").await;
    let spans = spans_of(id, 1);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_timeline(&spans[0]);
}
