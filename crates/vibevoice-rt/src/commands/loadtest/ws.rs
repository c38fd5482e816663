//! WebSocket mode: each stream holds a protocol-v1 session on `/v1/tts/stream` and speaks the
//! built-in text in contexts back to back until the level's deadline, recording when each
//! context's audio frames arrive.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};
use vv_audio::{Encoding, FrameHeader, NATIVE_SAMPLE_RATE};

use super::clock::{Clock, IDLE_TIMEOUT, RETRY_PAUSE};
use super::codes;
use super::record::{ContextRecord, Frame, StreamRecord};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for the server to answer our Close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes that end a live context (docs/protocol.md); any error for a context before its
/// `context.created` ends it too (it was never created).
const CONTEXT_ENDING_ERRORS: [&str; 4] = [
    "slow_consumer",
    "synthesis_failed",
    "synthesis_cancelled",
    "encoding_failed",
];

/// What the streams of a level share.
pub struct Plan {
    /// The WebSocket URL with its query.
    pub url: String,
    /// Level number (from 1), for readable context ids.
    pub level: usize,
    /// The text of each context, as the `text` messages that carry it (one, or one per word).
    pub pieces: Arc<Vec<String>>,
}

/// Runs one stream until the deadline: a session, and a new one after a pause whenever a
/// session fails.
pub async fn stream(plan: Arc<Plan>, clock: Clock, index: u32) -> StreamRecord {
    let mut stream = Stream {
        plan,
        clock,
        index,
        contexts: 0,
        refused: None,
        record: StreamRecord::default(),
    };
    while !stream.clock.is_over() {
        let mut ws = match stream.connect().await {
            Ok(Some(ws)) => ws,
            Ok(None) => break,
            Err(code) => {
                stream.record.error(code);
                stream.clock.pause(RETRY_PAUSE).await;
                continue;
            }
        };
        match stream.session(&mut ws).await {
            End::TimeUp { open } => shut_down(ws, open).await,
            End::Failed { open } => {
                if open {
                    shut_down(ws, None).await;
                }
                stream.clock.pause(RETRY_PAUSE).await;
            }
        }
    }
    stream.record.end = stream.clock.end();
    stream.record
}

/// How a session ended.
enum End {
    /// The deadline passed; `open` is the context to cancel.
    TimeUp { open: Option<String> },
    /// An error ended it (already counted); `open` when the connection is still usable.
    Failed { open: bool },
}

/// How a context ended.
enum ContextEnd {
    /// `context.done` (or `cancelled`).
    Done,
    /// An error ended it; the session goes on.
    Error,
    /// The session ended with it.
    Session(End),
}

/// One message from the server, or the end of a wait.
enum Incoming {
    /// A JSON event.
    Event(Value),
    /// An audio frame: its header and the payload length in bytes.
    Frame(FrameHeader, usize),
    /// The connection ended: the error code for it.
    Closed(String),
    /// The wait ended before anything arrived.
    Silence,
}

/// One stream's state.
struct Stream {
    plan: Arc<Plan>,
    clock: Clock,
    index: u32,
    /// Contexts started so far (numbers the context ids).
    contexts: u64,
    /// The last context refused before `context.created` (`overloaded`, ...): the server
    /// answers its `close` with `unknown_context`, an echo of the refusal that is not counted.
    refused: Option<String>,
    record: StreamRecord,
}

/// The context being spoken.
struct OpenContext {
    id: String,
    /// Its `context_num` from `context.created`.
    num: Option<u32>,
    bytes_per_sample: usize,
    record: ContextRecord,
}

impl OpenContext {
    /// Notes `context.created`: the number that marks its frames, encoding and rate.
    fn created(&mut self, event: &Value) {
        self.num = event["context_num"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok());
        if let Some(encoding) = event["encoding"]
            .as_str()
            .and_then(|e| Encoding::from_str(e).ok())
        {
            self.bytes_per_sample = encoding.bytes_per_sample();
        }
        if let Some(rate) = event["sample_rate"]
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .filter(|&r| r > 0)
        {
            self.record.sample_rate = rate;
        }
    }
}

impl Stream {
    /// Opens a session; `Ok(None)` when the deadline passed first, `Err` with the error code
    /// when the connection or the upgrade failed.
    async fn connect(&mut self) -> Result<Option<Ws>, String> {
        // The upgrade request is the stream's first send: a stream refused at the upgrade
        // received no audio in its wall time.
        self.record.sent(self.clock.elapsed());
        let connecting = connect_async_with_config(self.plan.url.as_str(), None, true);
        match timeout_at(self.clock.wake_at(IDLE_TIMEOUT), connecting).await {
            Err(_) if self.clock.is_over() => Ok(None),
            Err(_) => Err(codes::TIMEOUT.into()),
            Ok(Ok((ws, _))) => Ok(Some(ws)),
            Ok(Err(WsError::Http(response))) => Err(codes::http_error(
                response.status().as_u16(),
                response.body().as_deref().unwrap_or_default(),
            )),
            Ok(Err(_)) => Err(codes::CONNECT_FAILED.into()),
        }
    }

    /// Waits for `session.ready`, then runs contexts until the deadline or a failure.
    async fn session(&mut self, ws: &mut Ws) -> End {
        loop {
            match self.receive(ws, self.clock.wake_at(IDLE_TIMEOUT)).await {
                Incoming::Event(event) if event["type"] == "session.ready" => break,
                Incoming::Event(event) => self.count_error(&event),
                Incoming::Frame(..) => {}
                Incoming::Closed(code) => return self.lost(code),
                Incoming::Silence => return self.silence(None),
            }
        }
        loop {
            if self.clock.is_over() {
                return End::TimeUp { open: None };
            }
            match self.context(ws).await {
                ContextEnd::Done => {}
                ContextEnd::Error => {
                    if let Some(end) = self.listen(ws, RETRY_PAUSE).await {
                        return end;
                    }
                }
                ContextEnd::Session(end) => return end,
            }
        }
    }

    /// Speaks the text in a new context (`text` then `close`) and reads until it ends.
    async fn context(&mut self, ws: &mut Ws) -> ContextEnd {
        self.contexts += 1;
        let id = format!("l{}s{}c{}", self.plan.level, self.index, self.contexts);
        let sent = self.clock.elapsed();
        let mut open = OpenContext {
            id,
            num: None,
            bytes_per_sample: Encoding::PcmS16le.bytes_per_sample(),
            record: ContextRecord::new(sent, NATIVE_SAMPLE_RATE),
        };
        let end = match self.send_text(ws, &mut open).await {
            Some(end) => end,
            None => self.read_context(ws, &mut open).await,
        };
        self.record.contexts.push(open.record);
        end
    }

    /// Sends the context's text (one message, or one per word) and its `close`, reading what
    /// is already there between messages, as a streaming client does: a frame that arrives
    /// while words are still being sent is timed when it arrives, not after the last word.
    /// Each message is built just before it is written, as a client streaming an LLM's words
    /// has only the next one, and the context's clock starts at the first write: building all
    /// of a 10,000-character text's 1,700 messages first took the probe 0.5-1 ms (measured
    /// apart), which it counted as the service's. `Some` when the context ended meanwhile.
    async fn send_text(&mut self, ws: &mut Ws, open: &mut OpenContext) -> Option<ContextEnd> {
        let (pieces, id) = (Arc::clone(&self.plan.pieces), open.id.clone());
        let messages = (pieces.iter())
            .map(|piece| json!({"type": "text", "context_id": id, "text": piece}))
            .chain([json!({"type": "close", "context_id": id})]);
        for (n, message) in messages.enumerate() {
            let message = text_message(&message);
            if n == 0 {
                open.record.sent = self.clock.elapsed();
            }
            if ws.send(message).await.is_err() {
                return Some(ContextEnd::Session(
                    self.lost(codes::CONNECTION_LOST.into()),
                ));
            }
            loop {
                match self.received(ws) {
                    Incoming::Silence => break,
                    incoming => {
                        if let Some(end) = self.on_context_message(open, incoming) {
                            return Some(end);
                        }
                    }
                }
            }
        }
        None
    }

    /// Reads events and frames until the context ends.
    async fn read_context(&mut self, ws: &mut Ws, open: &mut OpenContext) -> ContextEnd {
        loop {
            let incoming = match self.receive(ws, self.clock.wake_at(IDLE_TIMEOUT)).await {
                Incoming::Silence => return ContextEnd::Session(self.silence(Some(&open.id))),
                incoming => incoming,
            };
            if let Some(end) = self.on_context_message(open, incoming) {
                return end;
            }
        }
    }

    /// Records one message of the open context's session; `Some` when it ends the context.
    fn on_context_message(
        &mut self,
        open: &mut OpenContext,
        incoming: Incoming,
    ) -> Option<ContextEnd> {
        match incoming {
            Incoming::Silence => None,
            Incoming::Closed(code) => Some(ContextEnd::Session(self.lost(code))),
            Incoming::Frame(header, bytes) => {
                if Some(header.context_num) == open.num {
                    open.record.frames.push(Frame {
                        at: self.clock.elapsed(),
                        samples: (bytes / open.bytes_per_sample.max(1)) as u64,
                    });
                }
                None
            }
            Incoming::Event(event) => {
                let ours = event["context_id"].as_str() == Some(open.id.as_str());
                match event["type"].as_str() {
                    Some("context.created") if ours => open.created(&event),
                    Some("context.done" | "cancelled") if ours => return Some(ContextEnd::Done),
                    Some("error") => {
                        self.count_error(&event);
                        let code = event["code"].as_str().unwrap_or_default();
                        if ours && open.num.is_none() {
                            self.refused = Some(open.id.clone());
                            return Some(ContextEnd::Error);
                        }
                        if ours && CONTEXT_ENDING_ERRORS.contains(&code) {
                            return Some(ContextEnd::Error);
                        }
                    }
                    _ => {}
                }
                None
            }
        }
    }

    /// Reads (counting errors, dropping audio) for `wait` between contexts; `Some` when the
    /// session ended meanwhile.
    async fn listen(&mut self, ws: &mut Ws, wait: Duration) -> Option<End> {
        let until = self.clock.wake_at(wait);
        loop {
            match self.receive(ws, until).await {
                Incoming::Event(event) => self.count_error(&event),
                Incoming::Frame(..) => {}
                Incoming::Closed(code) => return Some(self.lost(code)),
                Incoming::Silence => {
                    return self.clock.is_over().then_some(End::TimeUp { open: None })
                }
            }
        }
    }

    /// The next event or frame before `until`; messages that are neither are counted as
    /// invalid and skipped.
    async fn receive(&mut self, ws: &mut Ws, until: Instant) -> Incoming {
        loop {
            match timeout_at(until, ws.next()).await {
                Err(_) => return Incoming::Silence,
                Ok(item) => {
                    if let Some(incoming) = self.parse(item) {
                        return incoming;
                    }
                }
            }
        }
    }

    /// The next event or frame if one has already arrived, without waiting (`Silence` when
    /// none has).
    fn received(&mut self, ws: &mut Ws) -> Incoming {
        while let Some(item) = ws.next().now_or_never() {
            if let Some(incoming) = self.parse(item) {
                return incoming;
            }
        }
        Incoming::Silence
    }

    /// What a message read from the connection is (`None`: nothing to report, skip it).
    fn parse(&mut self, item: Option<Result<Message, WsError>>) -> Option<Incoming> {
        match item {
            None | Some(Err(_)) => Some(Incoming::Closed(codes::CONNECTION_LOST.into())),
            Some(Ok(Message::Close(frame))) => Some(Incoming::Closed(codes::closed(
                frame.map(|f| u16::from(f.code)),
            ))),
            Some(Ok(Message::Text(text))) => {
                match serde_json::from_str::<Value>(text.as_str()) {
                    Ok(event) if event.is_object() => return Some(Incoming::Event(event)),
                    _ => self.record.error(codes::INVALID_MESSAGE),
                }
                None
            }
            Some(Ok(Message::Binary(bytes))) => match FrameHeader::decode(&bytes) {
                Ok((header, payload)) => Some(Incoming::Frame(header, payload.len())),
                Err(_) => {
                    self.record.error(codes::INVALID_MESSAGE);
                    None
                }
            },
            Some(Ok(_)) => None,
        }
    }

    /// Counts an `error` event (other events are not errors), except the echo of a refusal.
    fn count_error(&mut self, event: &Value) {
        if event["type"] != "error" {
            return;
        }
        let code = event["code"].as_str().unwrap_or("error");
        if code == "unknown_context"
            && self.refused.is_some()
            && event["context_id"].as_str() == self.refused.as_deref()
        {
            self.refused = None;
            return;
        }
        self.record.error(code);
    }

    /// The session ends with the connection gone: counts `code`.
    fn lost(&mut self, code: String) -> End {
        self.record.error(code);
        End::Failed { open: false }
    }

    /// A wait ended with nothing received: the deadline (cancel `open`), or the idle timeout.
    fn silence(&mut self, open: Option<&str>) -> End {
        if self.clock.is_over() {
            End::TimeUp {
                open: open.map(str::to_string),
            }
        } else {
            self.record.error(codes::TIMEOUT);
            End::Failed { open: true }
        }
    }
}

/// Sends a JSON message.
async fn send(ws: &mut Ws, message: &Value) -> Result<(), WsError> {
    ws.send(text_message(message)).await
}

/// `message` as a WebSocket text message.
fn text_message(message: &Value) -> Message {
    Message::Text(message.to_string().into())
}

/// Cancels `open`, sends a Close frame and waits (boundedly) for the server's close.
async fn shut_down(mut ws: Ws, open: Option<String>) {
    let closing = async {
        if let Some(id) = open {
            send(&mut ws, &json!({"type": "cancel", "context_id": id})).await?;
        }
        ws.close(None).await?;
        while let Some(Ok(_)) = ws.next().await {}
        Ok::<(), WsError>(())
    };
    // Failing to close cleanly changes nothing in the report: the connection is dropped.
    let _ = timeout(CLOSE_TIMEOUT, closing).await;
}
