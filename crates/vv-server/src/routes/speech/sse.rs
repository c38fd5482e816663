//! OpenAI's `stream_format: "sse"`: each audio chunk as a `speech.audio.delta` event (base64
//! of the response format's bytes), then one `speech.audio.done` event; a failure mid-stream
//! ends it with an `error` event carrying the error envelope.

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::error::ApiError;

/// `Content-Type` of the event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The event for one chunk of audio.
pub fn delta_event(audio: &[u8]) -> Bytes {
    event(&json!({ "type": "speech.audio.delta", "audio": STANDARD.encode(audio) }))
}

/// The event that ends a successful stream.
pub fn done_event() -> Bytes {
    event(&json!({ "type": "speech.audio.done" }))
}

/// The event that ends a failed stream.
pub fn error_event(error: &ApiError) -> Bytes {
    let mut envelope = error.envelope();
    envelope["type"] = json!("error");
    event(&envelope)
}

/// Frames an audio chunk stream as server-sent events.
pub fn sse_events<S>(chunks: S) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, ApiError>> + Send + 'static,
{
    futures::stream::unfold(Some(Box::pin(chunks)), |state| async move {
        let mut chunks = state?;
        let (bytes, next) = match chunks.next().await {
            Some(Ok(audio)) => (delta_event(&audio), Some(chunks)),
            Some(Err(e)) => (error_event(&e), None),
            None => (done_event(), None),
        };
        Some((Ok(bytes), next))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_events(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn deltas_then_done() {
        let chunks =
            futures::stream::iter([Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))]);
        let all: Vec<u8> = sse_events(chunks)
            .map(|r| r.unwrap().to_vec())
            .concat()
            .await;
        let events = parse_events(&all);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["type"], "speech.audio.delta");
        assert_eq!(
            STANDARD
                .decode(events[0]["audio"].as_str().unwrap())
                .unwrap(),
            b"ab"
        );
        assert_eq!(
            STANDARD
                .decode(events[1]["audio"].as_str().unwrap())
                .unwrap(),
            b"c"
        );
        assert_eq!(events[2]["type"], "speech.audio.done");
    }

    #[tokio::test]
    async fn an_error_ends_the_stream() {
        let chunks = futures::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(ApiError::SlowConsumer),
            Ok(Bytes::from_static(b"never")),
        ]);
        let all: Vec<u8> = sse_events(chunks)
            .map(|r| r.unwrap().to_vec())
            .concat()
            .await;
        let events = parse_events(&all);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["type"], "error");
        assert_eq!(events[1]["error"]["code"], "slow_consumer");
    }
}
