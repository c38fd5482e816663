//! Hostile and careless clients against a real server (tiny fixture model, short timeouts):
//! half-sent requests (slowloris), idle keep-alive connections, clients that never read a
//! streaming body, the connection caps, ping and fragment floods, oversized demo messages,
//! and the WebSocket closing handshake on both WebSocket routes. Timings are never asserted
//! beyond generous bounds: the tests only check that every bad client is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{TestServer, VOICE};
use futures::{SinkExt, StreamExt};
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use vv_server::config::MaxSlots;

/// Longest wait for anything a test expects to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection (EOF or reset); what was read, and when.
async fn read_until_closed(tcp: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let read = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .expect("the server kept the connection open");
        match read {
            Ok(0) | Err(_) => return (received, Instant::now()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Waits until `done` holds (panics after [`PATIENCE`] with `what`).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn open_connections(server: &TestServer) -> i64 {
    server.state.metrics().connections.open.get()
}

/// A raw connection from `source` (an address on the loopback) to the server.
async fn connect_from(server: &TestServer, source: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("Linux routes all of 127.0.0.0/8 to the loopback");
    socket.connect(server.addr).await.unwrap()
}

#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let server = TestServer::start(|s| {
        s.limits.header_read_timeout_secs = 1;
        s.limits.keepalive_idle_timeout_secs = 3600;
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let sent = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A byte now and then does not extend the deadline.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow.write_all(b"X").await.is_err() {
            break;
        }
    }
    let (answer, closed) = read_until_closed(&mut slow).await;
    let waited = closed - sent;
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // A connection that sends nothing at all is closed too, and others are still served.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let (answer, _) = read_until_closed(&mut silent).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
    eventually("connections still counted", || {
        open_connections(&server) == 0
    })
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let server = TestServer::start(|s| {
        s.limits.header_read_timeout_secs = 3600;
        s.limits.keepalive_idle_timeout_secs = 1;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // Waiting longer than the keep-alive timeout for the first request is fine: the first
    // request has `header_read_timeout_secs` (here an hour).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let (answer, closed) = read_until_closed(&mut tcp).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    let idle = closed - answered;
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
}

#[tokio::test]
async fn a_client_that_never_reads_a_streaming_body_is_disconnected_and_its_slot_freed() {
    let server = TestServer::ready(|s| {
        s.limits.max_slots = MaxSlots::Fixed(1);
        s.limits.write_timeout_secs = 1;
        s.limits.keepalive_idle_timeout_secs = 3600;
        s.limits.header_read_timeout_secs = 3600;
    })
    .await;
    let body = json!({
        "model": "tts-1",
        "voice": VOICE,
        "seed": 11,
        "input": "A long utterance that keeps its synthesis slot busy for a good while. ".repeat(40),
        "response_format": "pcm",
        "sample_rate": 48_000,
    })
    .to_string();
    let request = format!(
        "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(server.addr).await.unwrap();
    // One response (~1.7 MB) fits in the loopback's socket buffers: pipeline several
    // requests, so that the audio the client never reads outgrows them.
    tcp.write_all(request.repeat(8).as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = tcp.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

    // Never read again: the server's writes block, and after the write timeout it drops the
    // connection (cancelling the utterance it was sending, if still running).
    eventually(
        "the connection of a client that does not read stayed open",
        || open_connections(&server) == 0,
    )
    .await;
    server.wait_idle().await;
    let (status, _, _) = server
        .post_json(
            "/v1/audio/speech",
            &json!({"model": "tts-1", "voice": VOICE, "input": "Hello.", "response_format": "pcm"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the slot is free again");
}

#[tokio::test]
async fn the_global_connection_cap_refuses_with_503_and_recovers() {
    let server = TestServer::start(|s| s.limits.max_connections = 2).await;
    let held = [
        TcpStream::connect(server.addr).await.unwrap(),
        TcpStream::connect(server.addr).await.unwrap(),
    ];
    eventually("two connections not counted", || {
        open_connections(&server) == 2
    })
    .await;
    let mut extra = connect_from(&server, [127, 0, 0, 2]).await;
    let (answer, _) = read_until_closed(&mut extra).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after:"),
        "{answer}"
    );
    let refused = server
        .state
        .metrics()
        .connections
        .refused_total
        .with_label_values(&["max_connections"])
        .get();
    assert_eq!(refused, 1);

    drop(held);
    eventually("closed connections still counted", || {
        open_connections(&server) == 0
    })
    .await;
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_per_ip_cap_refuses_one_address_and_serves_another() {
    let server = TestServer::start(|s| {
        s.limits.max_connections = 100;
        s.limits.max_connections_per_ip = 2;
    })
    .await;
    let _held = [
        connect_from(&server, [127, 0, 0, 1]).await,
        connect_from(&server, [127, 0, 0, 1]).await,
    ];
    eventually("two connections not counted", || {
        open_connections(&server) == 2
    })
    .await;
    let mut third = connect_from(&server, [127, 0, 0, 1]).await;
    let (answer, _) = read_until_closed(&mut third).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"));
    let refused = server
        .state
        .metrics()
        .connections
        .refused_total
        .with_label_values(&["max_connections_per_ip"])
        .get();
    assert_eq!(refused, 1);

    let mut other = connect_from(&server, [127, 0, 0, 3]).await;
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut other).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws(server: &TestServer, path: &str) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(server.ws_url(path))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// Reads until the server's close frame; its code (`None`: the connection ended without one).
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no close within the patience");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

/// A demo `/stream` request that keeps its slot busy for a while.
fn long_demo_path() -> String {
    let text = "A long utterance that keeps its synthesis slot busy for a good while. ".repeat(8);
    format!("/stream?text={}&steps=100", text.replace(' ', "%20"))
}

fn bye() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4000),
        reason: "bye".into(),
    }))
}

#[tokio::test]
async fn a_client_close_frame_is_answered_on_both_websocket_routes() {
    let server = TestServer::ready(|_| {}).await;

    let mut v1 = ws(&server, "/v1/tts/stream").await;
    let ready = v1.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("session.ready"));
    v1.send(bye()).await.unwrap();
    assert_eq!(close_code(&mut v1).await, Some(CloseCode::Library(4000)));

    let mut demo = ws(&server, &long_demo_path()).await;
    demo.next().await.unwrap().unwrap();
    demo.send(bye()).await.unwrap();
    assert_eq!(close_code(&mut demo).await, Some(CloseCode::Library(4000)));
    server.wait_idle().await;
}

#[tokio::test]
async fn an_oversized_demo_message_closes_with_1009_and_cancels() {
    let server = TestServer::ready(|s| s.limits.max_message_bytes = 4096).await;
    let mut demo = ws(&server, &long_demo_path()).await;
    demo.next().await.unwrap().unwrap();
    demo.send(Message::Text("x".repeat(1 << 20).into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut demo).await, Some(CloseCode::Size));
    server.wait_idle().await;
}

#[tokio::test]
async fn demo_text_checks_come_before_a_slot_is_taken() {
    let server = TestServer::ready(|s| {
        s.limits.max_slots = MaxSlots::Fixed(1);
        s.limits.max_text_chars = 600;
    })
    .await;
    // Hold the only slot.
    let mut holder = ws(&server, &long_demo_path()).await;
    holder.next().await.unwrap().unwrap();
    assert_eq!(server.state.in_flight(), 1);

    let mut too_long = ws(&server, &format!("/stream?text={}", "a".repeat(601))).await;
    let mut events = Vec::new();
    while let Some(Ok(Message::Text(t))) = too_long.next().await {
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        events.push(v["event"].as_str().unwrap().to_string());
    }
    assert_eq!(events, ["backend_request_received", "backend_error"]);

    let mut empty = ws(&server, "/stream?text=%20").await;
    let mut events = Vec::new();
    loop {
        match empty.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                events.push(v["event"].as_str().unwrap().to_string());
            }
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        events,
        ["backend_request_received", "backend_stream_complete"]
    );
    drop(holder);
    server.wait_idle().await;
}

#[tokio::test]
async fn a_fragment_flood_is_cut_at_the_message_limit_on_both_routes() {
    let server = TestServer::ready(|s| s.limits.max_message_bytes = 4096).await;
    let demo_path = long_demo_path();
    for path in ["/v1/tts/stream", demo_path.as_str()] {
        let mut flood = ws(&server, path).await;
        flood.next().await.unwrap().unwrap();
        let first = Frame::message(vec![b'a'; 100], OpCode::Data(Data::Text), false);
        let _ = flood.send(Message::Frame(first)).await;
        for _ in 0..200 {
            let more = Frame::message(vec![b'a'; 100], OpCode::Data(Data::Continue), false);
            if flood.send(Message::Frame(more)).await.is_err() {
                break;
            }
        }
        assert_eq!(
            close_code(&mut flood).await,
            Some(CloseCode::Size),
            "{path}"
        );
    }
    server.wait_idle().await;
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_ping_flood_does_not_stop_the_service_for_others() {
    let server = TestServer::ready(|_| {}).await;
    let mut flood = ws(&server, "/v1/tts/stream").await;
    flood.next().await.unwrap().unwrap();
    let flooding = tokio::spawn(async move {
        for _ in 0..20_000 {
            if flood.send(Message::Ping(vec![7; 16].into())).await.is_err() {
                break;
            }
        }
        flood
    });
    let (status, _, pcm) = server
        .post_json(
            "/v1/audio/speech",
            &json!({"model": "tts-1", "voice": VOICE, "input": "Hello.", "response_format": "pcm"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!pcm.is_empty());
    let mut flood = tokio::time::timeout(PATIENCE, flooding)
        .await
        .expect("the flood did not end")
        .unwrap();
    // The flooding session is still a working session (pongs are not queued without bound).
    flood
        .send(Message::Text(
            json!({"type": "keepalive"}).to_string().into(),
        ))
        .await
        .unwrap();
    flood.send(bye()).await.unwrap();
    assert_eq!(close_code(&mut flood).await, Some(CloseCode::Library(4000)));
}
