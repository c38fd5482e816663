//! The session state machine of `GET /v1/tts/stream`, written against a generic
//! `Sink<Outgoing>` / `Stream<Item = Incoming>` so it runs on channels in tests.
//!
//! One task per session waits, whichever comes first, for a client message, an engine event
//! of any context, an idle deadline or the server's drain signal, and handles it to the end
//! before waiting again: events of one context therefore leave in the order the engine
//! produced them, with `context.created` before any audio and `flushed` / `context.done`
//! after the last frame. Sending waits for the transport (a client that does not read stalls
//! only itself: the engine's bounded outbox then warns and cancels the context with
//! `slow_consumer`); a send blocked for longer than the session idle timeout ends the session.
//! Dropping the session (client gone, fatal error) cancels every utterance it runs.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use futures::future::{select_all, FutureExt};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tracing::{debug, warn};
use vv_audio::{Encoding, SUPPORTED_SAMPLE_RATES};
use vv_engine::{EngineHandle, UtteranceEvent};

use super::close_code::CloseCode;
use super::context::{Context, Emit};
use super::error::WsError;
use super::events::{AnnouncedLimits, Ready, ServerEvent, PROTOCOL_VERSION};
use super::messages::{parse, CancelTarget, ClientMessage, Configure};
use super::session_config::{SessionConfig, CLAMPED};
use super::transport::{Incoming, Outgoing, TransportFailure};
use crate::config::Limits;
use crate::metrics::{Outcome, WsSessionGuard};
use crate::routes::models::MODEL_ID;
use crate::state::AppState;

/// How long the server waits for the client's answer to its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Warning code: a context was closed because it waited too long for text.
const CONTEXT_IDLE: &str = "context_idle_timeout";
/// Warning code: the server started draining.
const SHUTTING_DOWN: &str = "shutting_down";

/// Why the session loop stops.
enum Ended {
    /// The client closed or the connection broke: nothing more to send.
    ClientLeft,
    /// The server sent a close frame; the client's answer is awaited briefly.
    Closed,
}

type Flow = Result<(), Ended>;

/// What woke the session up.
enum Wake {
    Client(Option<Incoming>),
    Engine(String, Option<UtteranceEvent>),
    Timer,
    Drain(bool),
}

/// Runs one session until the client leaves, a fatal error, the idle timeout or the end of
/// a drain. `config` holds the session defaults (service settings and query parameters).
pub async fn run_session<Tx, Rx>(
    state: AppState,
    engine: EngineHandle,
    config: SessionConfig,
    outgoing: Tx,
    mut incoming: Rx,
) where
    Tx: Sink<Outgoing> + Unpin,
    Tx::Error: Display,
    Rx: Stream<Item = Incoming> + Unpin,
{
    let limits = state.settings().limits;
    let mut session = Session {
        _open: WsSessionGuard::new(state.metrics().clone()),
        state,
        engine,
        limits,
        config,
        out: outgoing,
        contexts: BTreeMap::new(),
        next_num: 1,
        last_activity: Instant::now(),
        draining: false,
    };
    if let Err(Ended::Closed) = session.run(&mut incoming).await {
        session.contexts.clear();
        let answer = async { while !matches!(incoming.next().await, None | Some(Incoming::Close)) {} };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, answer).await;
    }
}

struct Session<Tx> {
    state: AppState,
    engine: EngineHandle,
    limits: Limits,
    config: SessionConfig,
    out: Tx,
    contexts: BTreeMap<String, Context>,
    next_num: u32,
    last_activity: Instant,
    draining: bool,
    _open: WsSessionGuard,
}

/// The next event of any context with a running segment; never resolves when there is none.
async fn next_engine_event(
    contexts: &mut BTreeMap<String, Context>,
) -> (String, Option<UtteranceEvent>) {
    let waiting: Vec<_> = contexts
        .iter_mut()
        .filter(|(_, c)| c.has_segment())
        .map(|(id, c)| c.next_event().map(move |ev| (id.clone(), ev)).boxed())
        .collect();
    if waiting.is_empty() {
        return std::future::pending().await;
    }
    select_all(waiting).await.0
}

impl<Tx> Session<Tx>
where
    Tx: Sink<Outgoing> + Unpin,
    Tx::Error: Display,
{
    async fn run<Rx>(&mut self, incoming: &mut Rx) -> Flow
    where
        Rx: Stream<Item = Incoming> + Unpin,
    {
        let ready = self.ready();
        self.event(ready).await?;
        let mut drain = self.state.draining_signal();
        let mut drain_open = true;
        if *drain.borrow_and_update() {
            self.start_draining().await?;
        }
        loop {
            if self.draining && self.contexts.is_empty() {
                self.close(CloseCode::ShuttingDown).await;
                return Err(Ended::Closed);
            }
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            let wake = tokio::select! {
                item = incoming.next() => Wake::Client(item),
                (id, event) = next_engine_event(&mut self.contexts) => Wake::Engine(id, event),
                () = tokio::time::sleep_until(deadline) => Wake::Timer,
                changed = drain.changed(), if drain_open && !self.draining => {
                    Wake::Drain(changed.is_ok())
                }
            };
            match wake {
                Wake::Client(item) => self.on_client(item).await?,
                Wake::Engine(id, event) => self.on_engine(&id, event).await?,
                Wake::Timer => self.on_timer().await?,
                Wake::Drain(true) => self.start_draining().await?,
                Wake::Drain(false) => drain_open = false,
            }
        }
    }

    fn ready(&self) -> ServerEvent {
        let info = self.engine.info();
        let l = &self.limits;
        ServerEvent::SessionReady(Box::new(Ready {
            protocol_version: PROTOCOL_VERSION,
            model: MODEL_ID,
            device: info.device.device.label(),
            dtype: info.device.dtype.as_str(),
            native_sample_rate: info.model.sample_rate,
            frame_samples: info.model.frame_samples,
            defaults: self.config.clone(),
            limits: AnnouncedLimits {
                max_text_chars: l.max_text_chars,
                max_message_bytes: l.max_message_bytes,
                session_idle_timeout_secs: l.session_idle_timeout_secs,
                context_idle_timeout_secs: l.context_idle_timeout_secs,
                max_buffered_frames: l.max_buffered_frames,
            },
            voices: info.voices.clone(),
            encodings: Encoding::ALL.iter().map(|e| e.as_str()).collect(),
            sample_rates: SUPPORTED_SAMPLE_RATES.to_vec(),
        }))
    }

    fn session_idle(&self) -> Duration {
        Duration::from_secs(self.limits.session_idle_timeout_secs)
    }

    fn next_deadline(&self) -> Instant {
        let context_idle = Duration::from_secs(self.limits.context_idle_timeout_secs);
        self.contexts
            .values()
            .filter_map(|c| c.idle_deadline(context_idle))
            .fold(self.last_activity + self.session_idle(), Instant::min)
    }

    // ---- sending -------------------------------------------------------------------------

    async fn send(&mut self, message: Outgoing) -> Flow {
        match tokio::time::timeout(self.session_idle(), self.out.send(message)).await {
            Ok(Ok(())) => {
                self.last_activity = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => {
                debug!("client gone while sending: {e}");
                Err(Ended::ClientLeft)
            }
            Err(_) => {
                warn!("the client stopped reading; ending the session");
                Err(Ended::ClientLeft)
            }
        }
    }

    async fn event(&mut self, event: ServerEvent) -> Flow {
        self.send(Outgoing::Text(event.to_json())).await
    }

    /// Sends an `error` event (counted in `errors_total`); a fatal error closes the session.
    async fn report(&mut self, context_id: Option<&str>, error: WsError) -> Flow {
        self.state.metrics().record_error(error.code());
        debug!(code = error.code(), context_id, "protocol error: {error}");
        self.event(ServerEvent::error(context_id, &error)).await?;
        match error.close_code() {
            Some(code) => {
                self.close(code).await;
                Err(Ended::Closed)
            }
            None => Ok(()),
        }
    }

    async fn close(&mut self, code: CloseCode) {
        let frame = Outgoing::Close {
            code: code.code(),
            reason: code.reason().to_string(),
        };
        let _ = self.send(frame).await;
    }

    /// Sends what an operation on context `id` asks for.
    async fn apply(&mut self, id: &str, emits: Vec<Emit>) -> Flow {
        for emit in emits {
            match emit {
                Emit::Flushed => {
                    let context_id = id.to_string();
                    self.event(ServerEvent::Flushed { context_id }).await?;
                }
                Emit::Done => {
                    if let Some(context) = self.contexts.remove(id) {
                        self.event(context.done()).await?;
                    }
                }
                Emit::Error(e) => self.report(Some(id), e).await?,
            }
        }
        Ok(())
    }

    /// Forgets context `id` after `error` and reports it.
    async fn abort(&mut self, id: &str, error: WsError) -> Flow {
        if let Some(context) = self.contexts.remove(id) {
            let outcome = match error {
                WsError::SynthesisCancelled => Outcome::Cancelled,
                _ => Outcome::Failed,
            };
            context.abort(outcome);
        }
        self.report(Some(id), error).await
    }

    // ---- client messages -----------------------------------------------------------------

    async fn on_client(&mut self, item: Option<Incoming>) -> Flow {
        self.last_activity = Instant::now();
        match item {
            None | Some(Incoming::Close) | Some(Incoming::Failed(TransportFailure::Broken)) => {
                Err(Ended::ClientLeft)
            }
            Some(Incoming::Ping) => Ok(()),
            Some(Incoming::Binary { len }) => {
                debug!(len, "binary message from the client");
                let error = WsError::ProtocolViolation(
                    "binary messages are not part of the protocol; send JSON text messages",
                );
                self.report(None, error).await
            }
            Some(Incoming::Failed(failure)) => {
                let error = match failure {
                    TransportFailure::TooBig => WsError::MessageTooBig {
                        limit: self.limits.max_message_bytes,
                    },
                    TransportFailure::InvalidUtf8 => WsError::InvalidUtf8,
                    _ => WsError::ProtocolViolation("invalid WebSocket framing"),
                };
                self.report(None, error).await
            }
            Some(Incoming::Text(text)) if text.len() > self.limits.max_message_bytes => {
                let limit = self.limits.max_message_bytes;
                self.report(None, WsError::MessageTooBig { limit }).await
            }
            Some(Incoming::Text(text)) => match parse(&text) {
                Ok(message) => self.on_message(message).await,
                Err(e) => self.report(None, e).await,
            },
        }
    }

    async fn on_message(&mut self, message: ClientMessage) -> Flow {
        match message {
            ClientMessage::Configure(request) => self.on_configure(&request).await,
            ClientMessage::Text {
                context_id,
                text,
                flush,
            } => self.on_text(&context_id, &text, flush).await,
            ClientMessage::Flush { context_id } => self.on_flush(&context_id).await,
            ClientMessage::Close { context_id } => self.on_close(&context_id).await,
            ClientMessage::Cancel(target) => self.on_cancel(target).await,
            ClientMessage::Keepalive => Ok(()),
        }
    }

    async fn on_configure(&mut self, request: &Configure) -> Flow {
        match self.config.configure(request, self.engine.info()) {
            Ok((next, clamped)) => {
                for c in clamped {
                    self.event(ServerEvent::warning(None, CLAMPED, c.message)).await?;
                }
                self.config = next;
                self.event(ServerEvent::SessionConfigured(self.config.clone())).await
            }
            Err(e) => self.report(None, e).await,
        }
    }

    async fn on_text(&mut self, id: &str, text: &str, flush: bool) -> Flow {
        if text.is_empty() {
            return match (flush, self.contexts.contains_key(id)) {
                (true, true) => self.on_flush(id).await,
                _ => self.report(Some(id), WsError::EmptyText).await,
            };
        }
        let now = Instant::now();
        if !self.contexts.contains_key(id) {
            self.open_context(id, text, now).await?;
        }
        let max = self.limits.max_text_chars;
        let result = match self.contexts.get_mut(id) {
            Some(context) => context.text(&self.engine, text, max, now),
            None => return Ok(()),
        };
        match result {
            Ok(emits) => self.apply(id, emits).await?,
            Err(e) => self.report(Some(id), e).await?,
        }
        if flush {
            self.on_flush(id).await
        } else {
            Ok(())
        }
    }

    /// Creates context `id` for its first text (a refusal is reported and creates nothing).
    async fn open_context(&mut self, id: &str, text: &str, now: Instant) -> Flow {
        let max = self.limits.max_text_chars;
        let opened = if self.draining {
            Err(WsError::ShuttingDown)
        } else if text.chars().count() > max {
            Err(WsError::TextTooLong { max })
        } else {
            Context::open(
                id.to_string(),
                self.next_num,
                &self.config,
                &self.engine,
                self.state.metrics(),
                now,
            )
        };
        match opened {
            Ok(context) => {
                self.next_num = self.next_num.wrapping_add(1).max(1);
                let created = context.created_event();
                self.contexts.insert(id.to_string(), context);
                self.event(created).await
            }
            Err(e) => self.report(Some(id), e).await,
        }
    }

    async fn on_flush(&mut self, id: &str) -> Flow {
        let result = match self.contexts.get_mut(id) {
            Some(context) => context.flush(&self.engine, Instant::now()),
            None => Err(WsError::UnknownContext(id.to_string())),
        };
        match result {
            Ok(emits) => self.apply(id, emits).await,
            Err(e) => self.report(Some(id), e).await,
        }
    }

    async fn on_close(&mut self, id: &str) -> Flow {
        match self.contexts.get_mut(id) {
            Some(context) => {
                let emits = context.close(&self.engine);
                self.apply(id, emits).await
            }
            None => {
                let error = WsError::UnknownContext(id.to_string());
                self.report(Some(id), error).await
            }
        }
    }

    async fn on_cancel(&mut self, target: CancelTarget) -> Flow {
        let ids: Vec<String> = match target {
            CancelTarget::All => self.contexts.keys().cloned().collect(),
            CancelTarget::One(id) if self.contexts.contains_key(&id) => vec![id],
            CancelTarget::One(id) => {
                let error = WsError::UnknownContext(id.clone());
                return self.report(Some(&id), error).await;
            }
        };
        for id in ids {
            if let Some(context) = self.contexts.remove(&id) {
                self.event(context.cancelled()).await?;
            }
        }
        Ok(())
    }

    // ---- engine events -------------------------------------------------------------------

    async fn on_engine(&mut self, id: &str, event: Option<UtteranceEvent>) -> Flow {
        let Some(context) = self.contexts.get_mut(id) else {
            return Ok(());
        };
        match event {
            Some(UtteranceEvent::Audio { samples, .. }) => match context.audio_frame(&samples) {
                Ok(frame) => {
                    self.send(Outgoing::Binary(frame)).await?;
                    if let Some(context) = self.contexts.get_mut(id) {
                        context.audio_written();
                    }
                    Ok(())
                }
                Err(e) => self.abort(id, e).await,
            },
            Some(UtteranceEvent::Warning { code, message }) => {
                self.event(ServerEvent::warning(Some(id), code, message)).await
            }
            Some(UtteranceEvent::Finished { .. }) => {
                match context.segment_finished(&self.engine) {
                    Ok((tail, emits)) => {
                        if let Some(frame) = tail {
                            self.send(Outgoing::Binary(frame)).await?;
                        }
                        self.apply(id, emits).await
                    }
                    Err(e) => self.abort(id, e).await,
                }
            }
            Some(UtteranceEvent::Cancelled { .. }) => {
                self.abort(id, WsError::SynthesisCancelled).await
            }
            Some(UtteranceEvent::Failed(e)) => self.abort(id, e.into()).await,
            None => self.abort(id, WsError::EngineUnavailable).await,
        }
    }

    // ---- timers and draining -------------------------------------------------------------

    async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if now >= self.last_activity + self.session_idle() {
            let secs = self.limits.session_idle_timeout_secs;
            return self.report(None, WsError::IdleTimeout { secs }).await;
        }
        let context_idle = Duration::from_secs(self.limits.context_idle_timeout_secs);
        let expired: Vec<String> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.idle_deadline(context_idle).is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let message = format!(
                "no input for {} s: the context was closed",
                context_idle.as_secs()
            );
            self.event(ServerEvent::warning(Some(&id), CONTEXT_IDLE, message)).await?;
            self.close_context(&id).await?;
        }
        Ok(())
    }

    async fn close_context(&mut self, id: &str) -> Flow {
        let emits = match self.contexts.get_mut(id) {
            Some(context) => context.close(&self.engine),
            None => return Ok(()),
        };
        self.apply(id, emits).await
    }

    /// Stops taking new contexts and closes the open ones; once they are done the session
    /// closes with 1001.
    async fn start_draining(&mut self) -> Flow {
        self.draining = true;
        if self.contexts.is_empty() {
            return Ok(());
        }
        let message = "the server is shutting down: open contexts are closed and finish their audio";
        self.event(ServerEvent::warning(None, SHUTTING_DOWN, message)).await?;
        let ids: Vec<String> = self.contexts.keys().cloned().collect();
        for id in ids {
            self.close_context(&id).await?;
        }
        Ok(())
    }
}
