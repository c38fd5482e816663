//! The exporter thread: a small single-threaded runtime that takes the queued spans in
//! batches of at most [`MAX_BATCH`] and POSTs each batch, one at a time, with a bounded wait
//! ([`POST_TIMEOUT`]); while a POST is on its way, spans gather in the bounded queue. It ends
//! when the layer is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{header, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tracing::warn;

use super::encode::export_request;
use super::endpoint::Endpoint;
use super::layer::SpanRecord;
use super::{FAILURE_LOG_INTERVAL, MAX_BATCH, POST_TIMEOUT};
use crate::log_limit::LogLimit;

/// Starts the exporter thread.
pub(super) fn spawn(
    endpoint: Endpoint,
    queue: Receiver<SpanRecord>,
    dropped: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("vv-otlp".into())
        .spawn(move || runtime.block_on(run(endpoint, queue, dropped)))?;
    Ok(())
}

async fn run(endpoint: Endpoint, mut queue: Receiver<SpanRecord>, dropped: Arc<AtomicU64>) {
    let failures = LogLimit::new(FAILURE_LOG_INTERVAL);
    let drops = LogLimit::new(FAILURE_LOG_INTERVAL);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let body = export_request(&batch).to_string();
        let sent = tokio::time::timeout(POST_TIMEOUT, post(&endpoint, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {POST_TIMEOUT:?}")));
        if let Err(problem) = sent {
            if let Some(suppressed) = failures.allow() {
                warn!(%endpoint, spans = batch.len(), suppressed, "OTLP export failed: {problem}");
            }
        }
        batch.clear();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            if let Some(suppressed) = drops.allow() {
                warn!(lost, suppressed, "OTLP export queue full: spans dropped");
            }
        }
    }
}

/// One POST of `body` (a new connection each time: batches are seconds apart under load).
async fn post(endpoint: &Endpoint, body: String) -> Result<(), String> {
    let stream = TcpStream::connect(endpoint.authority())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let request = Request::post(endpoint.path())
        .header(header::HOST, endpoint.authority())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", response.status()))
    }
}
