//! The demo's `/stream` WebSocket: one synthesis per connection; binary frames of PCM16 LE
//! mono 24 kHz (one per generated frame) interleaved with JSON log events, then a normal
//! close. The text is checked before a slot is taken: too long -> `backend_error` and close
//! 1009, empty -> no audio. With no free slot the client gets `backend_busy` and close code
//! 1013. Inbound messages are capped at `max_message_bytes` like `/v1/tts/stream` (larger:
//! close 1009; invalid UTF-8: 1007). A client that disconnects or closes cancels the
//! utterance; its close frame is answered.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tracing::debug;
use vv_engine::{EngineError, EngineHandle, UtteranceEvent, UtteranceHandle};

use super::query::DemoRequest;
use super::wire::{demo_pcm16, log_event};
use crate::error::ApiError;
use crate::metrics::{ContextRecorder, Outcome, WsSessionGuard};
use crate::state::AppState;
use crate::trace::Carry;
use crate::upgrade::{prepare, Upgrade};
use crate::ws::close_code::CloseCode;
use crate::ws::transport::{adapt, Incoming, Outgoing, TransportFailure};

/// Close code for "try again later" (no free slot).
const CLOSE_BUSY: u16 = 1013;

/// Upgrades after the checks that answer with HTTP errors (not ready, draining).
pub async fn stream(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Upgrade {
        upgrade,
        query,
        engine,
    } = prepare("/stream", &state, query, upgrade)?;
    let request = DemoRequest::from_query(&query, state.settings(), engine.info())?;
    let carry = Carry::current();
    Ok(upgrade.on_upgrade(move |socket| {
        let (sink, incoming) = adapt(socket);
        carry.wrap(session(state, engine, request, sink, incoming))
    }))
}

/// The client is gone (a send failed).
struct Gone;

async fn session<Tx, Rx>(
    state: AppState,
    engine: EngineHandle,
    request: DemoRequest,
    mut sink: Tx,
    mut incoming: Rx,
) where
    Tx: Sink<Outgoing> + Unpin,
    Rx: Stream<Item = Incoming> + Unpin,
{
    let _open = WsSessionGuard::new(state.metrics().clone());
    let received = Instant::now();
    let text = request.text.as_str();
    let chars = text.chars().count();
    let max = state.settings().limits.max_text_chars;
    let utterance = if chars <= max && !text.trim().is_empty() {
        match engine.start(request.params.clone()) {
            Ok(u) => Some(u),
            Err(e @ (EngineError::Overloaded { .. } | EngineError::Draining)) => {
                state.metrics().record_error(ApiError::from(e).code());
                let busy = json!({"message": "Please wait for the other requests to complete."});
                if send_log(&mut sink, "backend_busy", busy).await.is_ok() {
                    close(&mut sink, CLOSE_BUSY, "Service busy").await;
                }
                return;
            }
            Err(e) => {
                fail(
                    &state,
                    &mut sink,
                    ApiError::from(e),
                    CloseCode::Normal.code(),
                )
                .await;
                return;
            }
        }
    } else {
        None
    };
    let received_log = json!({
        "text_length": chars,
        "cfg_scale": request.params.cfg_scale,
        "inference_steps": request.steps_param,
        "voice": request.voice_param,
    });
    if send_log(&mut sink, "backend_request_received", received_log)
        .await
        .is_err()
    {
        return;
    }
    if chars > max {
        let e = ApiError::InputTooLong { chars, max };
        fail(&state, &mut sink, e, CloseCode::MessageTooBig.code()).await;
        return;
    }
    if let Some(utterance) = utterance {
        let mut recorder = state
            .metrics()
            .context(received, engine.info().model.sample_rate);
        recorder.admitted(&utterance);
        let generation = generate(&mut sink, &mut incoming, utterance, recorder, text);
        match generation.await {
            Ok(Finish::Completed) => {}
            Ok(Finish::ClientGone) => return,
            Ok(Finish::Refused(code)) => {
                close(&mut sink, code.code(), code.reason()).await;
                return;
            }
            Err(e) => {
                state.metrics().record_error(e.code());
                let _ = send_log(
                    &mut sink,
                    "backend_error",
                    json!({"message": e.to_string()}),
                )
                .await;
            }
        }
    }
    if send_log(&mut sink, "backend_stream_complete", json!({}))
        .await
        .is_ok()
    {
        close(&mut sink, CloseCode::Normal.code(), "").await;
    }
}

/// How a generation ended without an error.
enum Finish {
    /// All audio was sent.
    Completed,
    /// The client closed or dropped the socket.
    ClientGone,
    /// The client sent what the transport refuses (too big, invalid UTF-8, bad framing).
    Refused(CloseCode),
}

/// Streams the utterance's frames; stops (cancelling the utterance) when the client goes
/// away or sends what the transport refuses.
async fn generate<Tx, Rx>(
    sink: &mut Tx,
    incoming: &mut Rx,
    mut utterance: UtteranceHandle,
    mut recorder: ContextRecorder,
    text: &str,
) -> Result<Finish, ApiError>
where
    Tx: Sink<Outgoing> + Unpin,
    Rx: Stream<Item = Incoming> + Unpin,
{
    utterance.push_text(text)?;
    utterance.close()?;
    let mut generated = 0.0f64;
    let mut first_sent = false;
    loop {
        let event = tokio::select! {
            event = utterance.next_event() => event,
            message = incoming.next() => match message {
                None | Some(Incoming::Close | Incoming::Failed(TransportFailure::Broken)) => {
                    debug!("demo client disconnected; cancelling");
                    recorder.finish(Outcome::Cancelled);
                    return Ok(Finish::ClientGone);
                }
                Some(Incoming::Failed(failure)) => {
                    debug!(?failure, "demo client sent an invalid message; cancelling");
                    recorder.finish(Outcome::Cancelled);
                    return Ok(Finish::Refused(close_code(failure)));
                }
                Some(
                    Incoming::Text(_)
                    | Incoming::Binary { .. }
                    | Incoming::Ping
                    | Incoming::Rejected { .. }
                    | Incoming::End,
                ) => continue,
            },
        };
        match event {
            Some(UtteranceEvent::Audio { samples, .. }) => {
                recorder.audio(samples.len());
                let chunk_sec = samples.len() as f64 / f64::from(recorder.sample_rate());
                generated += chunk_sec;
                if send(sink, Outgoing::Binary(demo_pcm16(&samples)))
                    .await
                    .is_err()
                {
                    return Ok(Finish::ClientGone);
                }
                recorder.audio_written();
                let first = !std::mem::replace(&mut first_sent, true);
                if first
                    && send_log(sink, "backend_first_chunk_sent", json!({}))
                        .await
                        .is_err()
                {
                    return Ok(Finish::ClientGone);
                }
                let progress = json!({"generated_sec": generated, "chunk_sec": chunk_sec});
                if send_log(sink, "model_progress", progress).await.is_err() {
                    return Ok(Finish::ClientGone);
                }
            }
            Some(UtteranceEvent::Warning { code, message }) => debug!(code, "{message}"),
            Some(UtteranceEvent::Finished { .. }) => {
                recorder.finish(Outcome::Done);
                return Ok(Finish::Completed);
            }
            Some(UtteranceEvent::Cancelled { .. }) => {
                recorder.finish(Outcome::Cancelled);
                return Err(ApiError::Cancelled);
            }
            Some(UtteranceEvent::Failed(e)) => {
                recorder.finish(Outcome::Failed);
                return Err(e.into());
            }
            None => {
                recorder.finish(Outcome::Failed);
                return Err(ApiError::EngineUnavailable);
            }
        }
    }
}

/// The close code for what the transport refused.
fn close_code(failure: TransportFailure) -> CloseCode {
    match failure {
        TransportFailure::TooBig => CloseCode::MessageTooBig,
        TransportFailure::InvalidUtf8 => CloseCode::InvalidPayload,
        TransportFailure::Protocol | TransportFailure::Broken => CloseCode::ProtocolViolation,
    }
}

/// Sends one message; an error means the client is gone.
async fn send<Tx: Sink<Outgoing> + Unpin>(sink: &mut Tx, message: Outgoing) -> Result<(), Gone> {
    sink.send(message).await.map_err(|_| Gone)
}

/// Sends one log event.
async fn send_log<Tx: Sink<Outgoing> + Unpin>(
    sink: &mut Tx,
    event: &str,
    data: Value,
) -> Result<(), Gone> {
    send(sink, Outgoing::Text(log_event(event, data))).await
}

/// Reports `error` as `backend_error`, then closes with `code`.
async fn fail<Tx: Sink<Outgoing> + Unpin>(
    state: &AppState,
    sink: &mut Tx,
    error: ApiError,
    code: u16,
) {
    state.metrics().record_error(error.code());
    let message = json!({"message": error.to_string()});
    if send_log(sink, "backend_error", message).await.is_ok() {
        close(sink, code, "").await;
    }
}

async fn close<Tx: Sink<Outgoing> + Unpin>(sink: &mut Tx, code: u16, reason: &str) {
    let reason = reason.to_string();
    let _ = send(sink, Outgoing::Close { code, reason }).await;
}
