//! The official demo's protocol against the real server: `GET /config` and the `/stream`
//! WebSocket (PCM16 binary frames, JSON log events, busy close 1013).

use crate::common::{TestServer, VOICE};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What a demo session delivered until the server closed it.
#[derive(Debug, Default)]
struct Session {
    /// Log events in order, with the number of binary frames received before each.
    logs: Vec<(usize, Value)>,
    /// Binary frames.
    frames: Vec<Vec<u8>>,
    /// The close code.
    close: Option<CloseCode>,
}

impl Session {
    fn events(&self) -> Vec<&str> {
        self.logs
            .iter()
            .map(|(_, v)| v["event"].as_str().unwrap())
            .collect()
    }

    fn event(&self, name: &str) -> &Value {
        &self
            .logs
            .iter()
            .find(|(_, v)| v["event"] == name)
            .unwrap()
            .1
    }
}

async fn read_session(ws: &mut Ws) -> Session {
    let mut s = Session::default();
    while let Some(message) = ws.next().await {
        match message.unwrap() {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "log");
                let ts = v["timestamp"].as_str().unwrap();
                assert_eq!(ts.len(), 23, "YYYY-MM-DD HH:MM:SS.mmm: {ts}");
                s.logs.push((s.frames.len(), v));
            }
            Message::Binary(b) => s.frames.push(b.to_vec()),
            Message::Close(frame) => {
                s.close = frame.map(|f| f.code);
                break;
            }
            _ => {}
        }
    }
    s
}

async fn connect(server: &TestServer, query: &str) -> Ws {
    let (ws, response) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/stream?{query}")))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

#[tokio::test]
async fn stream_sends_pcm16_frames_and_log_events_then_closes_normally() {
    let server = TestServer::ready(|_| {}).await;
    let mut ws = connect(
        &server,
        &format!("text=Hello%20from%20the%20demo%20page.&cfg=2.0&steps=4&voice={VOICE}"),
    )
    .await;
    let s = read_session(&mut ws).await;
    assert_eq!(s.close, Some(CloseCode::Normal));
    assert!(!s.frames.is_empty());
    assert!(
        s.frames.iter().all(|f| f.len() == 6400),
        "3200 PCM16 samples per frame"
    );

    let events = s.events();
    assert_eq!(events.first(), Some(&"backend_request_received"));
    assert_eq!(events.last(), Some(&"backend_stream_complete"));
    let received = s.event("backend_request_received")["data"].clone();
    assert_eq!(received["text_length"], 25);
    assert_eq!(received["cfg_scale"], 2.0);
    assert_eq!(received["inference_steps"], 4);
    assert_eq!(received["voice"], VOICE);
    let first_sent = s
        .logs
        .iter()
        .find(|(_, v)| v["event"] == "backend_first_chunk_sent")
        .unwrap();
    assert_eq!(first_sent.0, 1, "logged right after the first binary frame");
    let progress: Vec<&Value> = s
        .logs
        .iter()
        .filter(|(_, v)| v["event"] == "model_progress")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        progress.len(),
        s.frames.len(),
        "one progress event per chunk"
    );
    let last = &progress[progress.len() - 1]["data"];
    let expected = s.frames.len() as f64 * 3200.0 / 24_000.0;
    assert!((last["generated_sec"].as_f64().unwrap() - expected).abs() < 1e-9);
    assert!((last["chunk_sec"].as_f64().unwrap() - 3200.0 / 24_000.0).abs() < 1e-9);
    assert!(!events.contains(&"backend_error"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_fall_back_like_the_demo() {
    let server = TestServer::ready(|_| {}).await;
    let mut ws = connect(
        &server,
        "text=Fallbacks%20all%20round.&cfg=-3&steps=abc&voice=nobody",
    )
    .await;
    let s = read_session(&mut ws).await;
    assert_eq!(s.close, Some(CloseCode::Normal));
    let data = &s.event("backend_request_received")["data"];
    assert_eq!(data["cfg_scale"], 1.5);
    assert!(data["inference_steps"].is_null());
    assert_eq!(data["voice"], "nobody");
    assert!(!s.frames.is_empty(), "the default voice speaks");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn empty_text_gives_no_audio() {
    let server = TestServer::ready(|_| {}).await;
    let mut ws = connect(&server, "text=%20%20").await;
    let s = read_session(&mut ws).await;
    assert_eq!(
        s.events(),
        ["backend_request_received", "backend_stream_complete"]
    );
    assert!(s.frames.is_empty());
    assert_eq!(s.close, Some(CloseCode::Normal));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_second_client_gets_backend_busy_and_1013() {
    let server =
        TestServer::ready(|s| s.limits.max_slots = vv_server::config::MaxSlots::Fixed(1)).await;
    let long = "A long demo utterance that keeps the only slot busy for a good while. ".repeat(8);
    let mut first = connect(
        &server,
        &format!("text={}&steps=100", long.replace(' ', "%20")),
    )
    .await;
    match first.next().await.unwrap().unwrap() {
        Message::Text(t) => assert!(t.contains("backend_request_received")),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.state.in_flight(), 1);

    let mut second = connect(&server, "text=Me%20too.").await;
    let s = read_session(&mut second).await;
    assert_eq!(s.events(), ["backend_busy"]);
    assert_eq!(
        s.event("backend_busy")["data"]["message"],
        "Please wait for the other requests to complete."
    );
    assert_eq!(s.close, Some(CloseCode::Again));
    assert!(s.frames.is_empty());

    // Closing the first socket cancels its synthesis and frees the slot.
    first.close(None).await.unwrap();
    server.wait_idle().await;
    let mut third = connect(&server, "text=My%20turn.").await;
    let s = read_session(&mut third).await;
    assert_eq!(s.close, Some(CloseCode::Normal));
    assert!(!s.frames.is_empty());
    server.stop().await.unwrap();
}
