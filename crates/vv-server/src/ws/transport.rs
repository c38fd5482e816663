//! The session's view of a WebSocket: small enums for what comes in and goes out, so the
//! session runs on any `Stream<Item = Incoming>` / `Sink<Outgoing>` (channels in tests), and
//! the thin adapter that turns axum's [`WebSocket`] into that pair. The adapter answers a
//! client's close frame (the clean closing handshake) even when the session stops at once:
//! the answer goes out when the session drops its sink.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::{future, Sink, SinkExt, Stream, StreamExt};

/// Longest wait for the answer to a client's close frame to go out (a blocked write also
/// ends at `write_timeout_secs`).
const CLOSE_ANSWER: Duration = Duration::from_secs(5);

/// A message (or failure) received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message of `len` bytes (not part of the protocol).
    Binary {
        /// Payload length.
        len: usize,
    },
    /// A ping (answered by the transport; counts as activity).
    Ping,
    /// The client started the closing handshake.
    Close,
    /// The transport rejected what the client sent; nothing more will be read.
    Failed(TransportFailure),
    /// A dialect codec could not translate a message: the session reports `error` (about
    /// `context_id` when known) and goes on unless the error is fatal.
    Rejected {
        /// The context the message was about.
        context_id: Option<String>,
        /// What was wrong.
        error: crate::ws::WsError,
    },
    /// A dialect codec asked to end the session (ElevenLabs' `close_socket`): the server
    /// closes with 1000 (normal closure) and every context still running stops.
    End,
}

/// Why the transport stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// A message or frame exceeded the configured size limit.
    TooBig,
    /// A text message was not valid UTF-8.
    InvalidUtf8,
    /// The WebSocket framing was invalid.
    Protocol,
    /// The connection broke (I/O error, reset).
    Broken,
}

/// A message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A JSON event.
    Text(String),
    /// An audio frame (header + samples).
    Binary(Vec<u8>),
    /// Starts the closing handshake with `code` and a short `reason`.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Human-readable reason (at most 123 bytes on the wire).
        reason: String,
    },
}

impl From<Outgoing> for Message {
    fn from(out: Outgoing) -> Self {
        match out {
            Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Binary(bytes) => Message::Binary(bytes.into()),
            Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        }
    }
}

/// Maps one transport item; `None` for items the session does not see (pongs).
fn incoming(item: Result<Message, axum::Error>) -> Option<Incoming> {
    match item {
        Ok(Message::Text(text)) => Some(Incoming::Text(text.as_str().to_owned())),
        Ok(Message::Binary(bytes)) => Some(Incoming::Binary { len: bytes.len() }),
        Ok(Message::Ping(_)) => Some(Incoming::Ping),
        Ok(Message::Pong(_)) => None,
        Ok(Message::Close(_)) => Some(Incoming::Close),
        Err(e) => Some(Incoming::Failed(classify(&e))),
    }
}

/// Classifies a transport error by its message (axum hides tungstenite's error type; the
/// integration tests pin the mapping for oversized messages and invalid UTF-8).
fn classify(error: &axum::Error) -> TransportFailure {
    let text = error.to_string();
    if text.contains("Message too long") || text.contains("Space limit exceeded") {
        TransportFailure::TooBig
    } else if text.contains("UTF-8") {
        TransportFailure::InvalidUtf8
    } else if text.contains("protocol error") {
        TransportFailure::Protocol
    } else {
        TransportFailure::Broken
    }
}

/// Splits an upgraded axum socket into the session's sink and stream.
pub fn adapt(
    socket: WebSocket,
) -> (
    impl Sink<Outgoing, Error = axum::Error> + Unpin,
    impl Stream<Item = Incoming> + Unpin,
) {
    let (sink, stream) = socket.split();
    let peer_closed = Arc::new(AtomicBool::new(false));
    let sink = Outbound {
        sink: Some(sink),
        peer_closed: Arc::clone(&peer_closed),
    };
    let stream = stream.filter_map(move |item| {
        let item = incoming(item);
        if item == Some(Incoming::Close) {
            peer_closed.store(true, Ordering::Relaxed);
        }
        future::ready(item)
    });
    (sink, stream)
}

/// The session's sink: sends [`Outgoing`] messages; once the client sent a close frame,
/// dropping it flushes the answer that the WebSocket library queued (the client then sees
/// its own close code instead of an abnormal closure, 1006).
struct Outbound {
    /// Always present until drop.
    sink: Option<SplitSink<WebSocket, Message>>,
    peer_closed: Arc<AtomicBool>,
}

impl Outbound {
    fn sink(&mut self) -> Pin<&mut SplitSink<WebSocket, Message>> {
        Pin::new(self.sink.as_mut().expect("the sink is present until drop"))
    }
}

impl Sink<Outgoing> for Outbound {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().sink().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), Self::Error> {
        self.get_mut().sink().start_send(Message::from(item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().sink().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().sink().poll_close(cx)
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if !self.peer_closed.load(Ordering::Relaxed) {
            return;
        }
        let (Some(mut sink), Ok(runtime)) =
            (self.sink.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(CLOSE_ANSWER, sink.close()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_both_ways() {
        assert_eq!(
            incoming(Ok(Message::Text("hi".into()))),
            Some(Incoming::Text("hi".into()))
        );
        assert_eq!(
            incoming(Ok(Message::Binary(vec![1, 2, 3].into()))),
            Some(Incoming::Binary { len: 3 })
        );
        assert_eq!(incoming(Ok(Message::Pong(Vec::new().into()))), None);
        assert_eq!(incoming(Ok(Message::Close(None))), Some(Incoming::Close));
        let close = Message::from(Outgoing::Close {
            code: 4408,
            reason: "idle".into(),
        });
        let Message::Close(Some(frame)) = close else {
            panic!("not a close frame")
        };
        assert_eq!((frame.code, frame.reason.as_str()), (4408, "idle"));
    }

    #[test]
    fn transport_errors_are_classified() {
        let err = |m: &str| axum::Error::new(std::io::Error::other(m.to_string()));
        assert_eq!(
            classify(&err("Space limit exceeded: Message too long: 9 > 8")),
            TransportFailure::TooBig
        );
        assert_eq!(
            classify(&err("UTF-8 encoding error: invalid utf-8 sequence")),
            TransportFailure::InvalidUtf8
        );
        assert_eq!(
            classify(&err("WebSocket protocol error: Reserved bits are non-zero")),
            TransportFailure::Protocol
        );
        assert_eq!(
            classify(&err("Connection reset by peer")),
            TransportFailure::Broken
        );
    }
}
