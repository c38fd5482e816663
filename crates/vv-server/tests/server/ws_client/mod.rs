//! A protocol-v1 test client over tokio-tungstenite: connects to `/v1/tts/stream`, sends JSON
//! messages, and reads events and decoded audio frames with a timeout.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vv_audio::FrameHeader;

/// Longest wait for any single message.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// One thing received from the server.
#[derive(Debug, Clone)]
pub enum Received {
    /// A JSON event.
    Event(Value),
    /// An audio frame: decoded header and payload.
    Frame(FrameHeader, Vec<u8>),
    /// The close frame's code (`None`: the connection ended without one).
    Closed(Option<u16>),
}

/// A connected session.
pub struct Client {
    pub ws: Ws,
    /// The `session.ready` event.
    pub ready: Value,
    /// `context_num` of every context seen in `context.created`, by `context_id`.
    pub nums: HashMap<String, u32>,
}

/// Everything one context delivered until its terminal event.
#[derive(Debug, Default)]
pub struct ContextRun {
    /// Events (without audio) in arrival order, with the number of frames seen before each.
    pub events: Vec<(usize, Value)>,
    /// Audio frames in arrival order.
    pub frames: Vec<(FrameHeader, Vec<u8>)>,
}

impl ContextRun {
    /// Event types in order.
    pub fn types(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap().to_string())
            .collect()
    }

    /// The first event of `kind`.
    pub fn event(&self, kind: &str) -> &Value {
        &self
            .events
            .iter()
            .find(|(_, e)| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event in {:?}", self.types()))
            .1
    }

    /// All payload bytes, concatenated.
    pub fn payload(&self) -> Vec<u8> {
        self.frames
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .collect()
    }
}

/// A `ws://` URL for `path` on `addr`.
pub fn url(addr: std::net::SocketAddr, path_and_query: &str) -> String {
    format!("ws://{addr}{path_and_query}")
}

/// Connects (the handshake must succeed) and reads `session.ready`.
pub async fn connect(addr: std::net::SocketAddr, query: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(url(addr, &format!("/v1/tts/stream{query}")))
        .await
        .unwrap_or_else(|e| panic!("handshake for {query:?} failed: {e}"));
    let mut client = Client {
        ws,
        ready: Value::Null,
        nums: HashMap::new(),
    };
    match client.next().await {
        Received::Event(ev) if ev["type"] == "session.ready" => client.ready = ev,
        other => panic!("expected session.ready, got {other:?}"),
    }
    client
}

/// Tries a handshake that should fail; returns the HTTP status and the `Retry-After` header.
pub async fn refused(
    addr: std::net::SocketAddr,
    query: &str,
    bearer: Option<&str>,
) -> (u16, Option<String>) {
    let mut request = url(addr, &format!("/v1/tts/stream{query}"))
        .into_client_request()
        .unwrap();
    if let Some(key) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), retry_after)
        }
        Err(e) => panic!("unexpected handshake error: {e}"),
        Ok(_) => panic!("the handshake for {query:?} should have been refused"),
    }
}

/// Connects with an `Authorization: Bearer` header.
pub async fn connect_with_bearer(addr: std::net::SocketAddr, key: &str) -> Client {
    let mut request = url(addr, "/v1/tts/stream").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client {
        ws,
        ready: Value::Null,
        nums: HashMap::new(),
    };
    match client.next().await {
        Received::Event(ev) if ev["type"] == "session.ready" => client.ready = ev,
        other => panic!("expected session.ready, got {other:?}"),
    }
    client
}

impl Client {
    /// Sends a JSON message.
    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends a raw WebSocket message.
    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// Sends `text` for `context_id`.
    pub async fn text(&mut self, context_id: &str, text: &str) {
        self.send(json!({"type": "text", "context_id": context_id, "text": text}))
            .await;
    }

    /// Sends `close` for `context_id`.
    pub async fn close_context(&mut self, context_id: &str) {
        self.send(json!({"type": "close", "context_id": context_id}))
            .await;
    }

    /// The next message (panics after [`READ_TIMEOUT`]).
    pub async fn next(&mut self) -> Received {
        self.next_within(READ_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("nothing received within {READ_TIMEOUT:?}"))
    }

    /// The next message, or `None` if nothing arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        loop {
            let item = tokio::time::timeout(wait, self.ws.next()).await.ok()?;
            return Some(match item {
                None | Some(Err(_)) => Received::Closed(None),
                Some(Ok(Message::Text(t))) => {
                    let ev: Value = serde_json::from_str(&t).unwrap();
                    if ev["type"] == "context.created" {
                        let id = ev["context_id"].as_str().unwrap().to_string();
                        self.nums
                            .insert(id, ev["context_num"].as_u64().unwrap() as u32);
                    }
                    Received::Event(ev)
                }
                Some(Ok(Message::Binary(b))) => {
                    let (h, p) = FrameHeader::decode(&b).expect("valid frame header");
                    Received::Frame(h, p.to_vec())
                }
                Some(Ok(Message::Close(frame))) => {
                    Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
            });
        }
    }

    /// Reads until an event of `kind` (optionally for `context_id`); returns what came before
    /// and the event.
    pub async fn until(&mut self, kind: &str, context_id: Option<&str>) -> (Vec<Received>, Value) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Received::Event(ev)
                    if ev["type"] == kind && context_id.is_none_or(|id| ev["context_id"] == id) =>
                {
                    return (before, ev)
                }
                Received::Closed(code) => {
                    panic!("closed ({code:?}) while waiting for {kind}: {before:?}")
                }
                other => before.push(other),
            }
        }
    }

    /// Reads until `context.done` / `cancelled` / `error` of `context_id`, collecting its
    /// frames (by its `context_num` from `context.created`) and events.
    pub async fn run(&mut self, context_id: &str) -> ContextRun {
        let mut run = ContextRun::default();
        loop {
            let received = self.next().await;
            let num = self.nums.get(context_id).copied();
            match received {
                Received::Event(ev) if ev["context_id"] == context_id => {
                    let terminal = ["context.done", "cancelled", "error"]
                        .contains(&ev["type"].as_str().unwrap());
                    run.events.push((run.frames.len(), ev));
                    if terminal {
                        return run;
                    }
                }
                Received::Frame(h, p) if Some(h.context_num) == num => run.frames.push((h, p)),
                Received::Closed(code) => panic!("closed ({code:?}) during context {context_id}"),
                _ => {}
            }
        }
    }

    /// Reads until the close frame; returns its code and the events before it.
    pub async fn closed(&mut self) -> (Option<u16>, Vec<Value>) {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Received::Closed(code) => return (code, events),
                Received::Event(ev) => events.push(ev),
                Received::Frame(..) => {}
            }
        }
    }

    /// Speaks `text` as one message in context `context_id` and collects it to the end.
    pub async fn speak(&mut self, context_id: &str, text: &str) -> ContextRun {
        self.text(context_id, text).await;
        self.close_context(context_id).await;
        self.run(context_id).await
    }

    /// `session.configure` with `fields`; returns the `session.configured` event and the
    /// warnings before it.
    pub async fn configure(&mut self, fields: Value) -> (Value, Vec<Value>) {
        let mut message = fields;
        message["type"] = json!("session.configure");
        self.send(message).await;
        let (before, ev) = self.until("session.configured", None).await;
        let warnings = before
            .into_iter()
            .filter_map(|r| match r {
                Received::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        (ev, warnings)
    }

    /// The next `error` event (skipping anything else).
    pub async fn error(&mut self) -> Value {
        self.until("error", None).await.1
    }
}
