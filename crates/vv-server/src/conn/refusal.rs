//! Connections over a cap: answered with a ready-made 503 `too_many_connections` in one
//! non-blocking write (no task, no parsing) and closed at once; counted in
//! `connections_refused_total{reason}` and `errors_total`, and logged at most once a second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::warn;

use super::admission::Refusal;
use crate::error::ApiError;
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;

/// Request bytes read (and dropped) before answering, so that closing a socket with a
/// request already sent is less likely to reset it before the client reads the answer.
const DISCARD_BYTES: usize = 4096;

/// Turns away connections over a cap.
pub struct Refuser {
    response: Vec<u8>,
    metrics: Arc<Metrics>,
    log: LogLimit,
}

impl Refuser {
    /// Records refusals in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            response: response_bytes(&ApiError::TooManyConnections),
            metrics,
            log: LogLimit::new(Duration::from_secs(1)),
        }
    }

    /// Answers `tcp` (from `peer`) with the 503 and closes it.
    pub fn refuse(&self, tcp: TcpStream, peer: SocketAddr, why: Refusal) {
        self.metrics
            .connections
            .refused_total
            .with_label_values(&[why.label()])
            .inc();
        self.metrics
            .record_error(ApiError::TooManyConnections.code());
        if let Some(suppressed) = self.log.allow() {
            warn!(
                peer = %peer.ip(),
                reason = why.label(),
                suppressed,
                "connection refused: connection cap reached"
            );
        }
        let mut discard = [0u8; DISCARD_BYTES];
        let _ = tcp.try_read(&mut discard);
        let _ = tcp.try_write(&self.response);
    }
}

/// A whole HTTP/1.1 response carrying `error`'s JSON envelope, closing the connection.
fn response_bytes(error: &ApiError) -> Vec<u8> {
    let body = error.envelope().to_string();
    let status = error.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(secs) = error.retry_after() {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    [head.into_bytes(), body.into_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_503_with_the_json_envelope() {
        let bytes = response_bytes(&ApiError::TooManyConnections);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("retry-after: "));
        assert!(head.contains("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
