//! The demo's `/stream` WebSocket: one synthesis per connection; binary frames of PCM16 LE
//! mono 24 kHz (one per generated frame) interleaved with JSON log events, then a normal
//! close. With no free slot the client gets `backend_busy` and close code 1013. A client
//! that disconnects cancels the utterance.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tracing::debug;
use vv_engine::{EngineError, EngineHandle, UtteranceEvent, UtteranceHandle};

use super::query::DemoRequest;
use super::wire::{demo_pcm16, log_event};
use crate::error::ApiError;
use crate::metrics::{ContextRecorder, Outcome, WsSessionGuard};
use crate::state::AppState;
use crate::upgrade::{prepare, Upgrade};

/// Close code for "try again later" (no free slot).
const CLOSE_BUSY: u16 = 1013;
/// Close code for a message (here: the text) that is too big.
const CLOSE_TOO_BIG: u16 = 1009;
/// Normal closure.
const CLOSE_NORMAL: u16 = 1000;

type Sink = SplitSink<WebSocket, Message>;

/// Upgrades after the checks that answer with HTTP errors (not ready, draining).
pub async fn stream(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Upgrade {
        upgrade,
        query,
        engine,
    } = prepare("/stream", &state, query, upgrade)?;
    let request = DemoRequest::from_query(&query, state.settings(), engine.info());
    Ok(upgrade.on_upgrade(move |socket| session(socket, state, engine, request)))
}

async fn session(socket: WebSocket, state: AppState, engine: EngineHandle, request: DemoRequest) {
    let _open = WsSessionGuard::new(state.metrics().clone());
    let received = Instant::now();
    let (mut sink, mut incoming) = socket.split();
    let utterance = match engine.start(request.params.clone()) {
        Ok(u) => u,
        Err(e @ (EngineError::Overloaded { .. } | EngineError::Draining)) => {
            state.metrics().record_error(ApiError::from(e).code());
            let busy = json!({"message": "Please wait for the other requests to complete."});
            let _ = send_log(&mut sink, "backend_busy", busy).await;
            close(&mut sink, CLOSE_BUSY, "Service busy").await;
            return;
        }
        Err(e) => {
            fail(&state, &mut sink, ApiError::from(e), CLOSE_NORMAL).await;
            return;
        }
    };
    let text = request.text.as_str();
    let received_log = json!({
        "text_length": text.chars().count(),
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
    let max = state.settings().limits.max_text_chars;
    if text.chars().count() > max {
        let e = ApiError::InputTooLong {
            chars: text.chars().count(),
            max,
        };
        fail(&state, &mut sink, e, CLOSE_TOO_BIG).await;
        return;
    }
    if !text.trim().is_empty() {
        let recorder = state
            .metrics()
            .context(received, engine.info().model.sample_rate);
        let generation = generate(&mut sink, &mut incoming, utterance, recorder, text);
        match generation.await {
            Ok(Finish::Completed) => {}
            Ok(Finish::ClientGone) => return,
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
    let _ = send_log(&mut sink, "backend_stream_complete", json!({})).await;
    close(&mut sink, CLOSE_NORMAL, "").await;
}

/// How a generation ended without an error.
enum Finish {
    /// All audio was sent.
    Completed,
    /// The client closed or dropped the socket.
    ClientGone,
}

/// Streams the utterance's frames; stops (cancelling the utterance) when the client goes away.
async fn generate(
    sink: &mut Sink,
    incoming: &mut futures::stream::SplitStream<WebSocket>,
    mut utterance: UtteranceHandle,
    mut recorder: ContextRecorder,
    text: &str,
) -> Result<Finish, ApiError> {
    utterance.push_text(text)?;
    utterance.close()?;
    let mut generated = 0.0f64;
    let mut first_sent = false;
    loop {
        let event = tokio::select! {
            event = utterance.next_event() => event,
            message = incoming.next() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    debug!("demo client disconnected; cancelling");
                    recorder.finish(Outcome::Cancelled);
                    return Ok(Finish::ClientGone);
                }
                Some(Ok(_)) => continue,
            },
        };
        match event {
            Some(UtteranceEvent::Audio { samples, .. }) => {
                recorder.audio(samples.len());
                let chunk_sec = samples.len() as f64 / f64::from(recorder.sample_rate());
                generated += chunk_sec;
                if sink
                    .send(Message::Binary(demo_pcm16(&samples).into()))
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

/// Sends one log event; an error means the client is gone.
async fn send_log(sink: &mut Sink, event: &str, data: Value) -> Result<(), axum::Error> {
    sink.send(Message::Text(log_event(event, data).into()))
        .await
}

/// Reports `error` as `backend_error`, then closes with `code`.
async fn fail(state: &AppState, sink: &mut Sink, error: ApiError, code: u16) {
    state.metrics().record_error(error.code());
    let _ = send_log(sink, "backend_error", json!({"message": error.to_string()})).await;
    close(sink, code, "").await;
}

async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
