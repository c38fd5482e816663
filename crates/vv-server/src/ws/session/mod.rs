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
//!
//! First audio first: while a context's first audio is being made from text the engine
//! already has (its first window's tokens were sent, or its input closed), the session leaves
//! client messages unread in the socket, for at most `first_audio_hold_ms` from when it saw
//! that (`auto`: 250 ms when the model runs on the CPU, off on GPUs). Text arriving then
//! cannot bring that audio sooner, but reading and tokenizing it took the cores the model
//! needed: a 10,000-character text sent word by word on two cores got its first audio 1.5-2
//! ms later with the tiny model, 4 ms with the real shapes (docs/benchmarks.md, session 17).
//! The cost: a `cancel`, or another context's text, sent meanwhile is read when the first
//! audio has gone out (or the hold ran out). Engine events and draining are handled
//! throughout; the idle timeouts wait for the hold's end (the client may be sending), then
//! count as before.
//!
//! [`client`] handles client messages, [`engine`] engine events, [`timers`] idle timeouts
//! and draining, [`sending`] everything that goes out.

mod client;
mod engine;
mod sending;
mod timers;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use futures::future::{select_all, FutureExt};
use futures::{Sink, Stream, StreamExt};
use vv_engine::{EngineHandle, UtteranceEvent};

use super::close_code::CloseCode;
use super::context::Context;
use super::events::{Ready, ServerEvent};
use super::session_config::SessionConfig;
use super::slot_share::SessionSlots;
use super::transport::{Incoming, Outgoing};
use crate::config::Limits;
use crate::metrics::WsSessionGuard;
use crate::state::AppState;

/// How long the server waits for the client's answer to its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Warning code: a context was closed because it waited too long for text.
const CONTEXT_IDLE: &str = "context_idle_timeout";
/// Warning code: the server started draining.
const SHUTTING_DOWN: &str = "shutting_down";
/// Most client messages handled in one batch after the one that woke the session: those that
/// had already arrived, their text for a context merged into one push (see
/// [`Session::on_arrived`]).
const CLIENT_BATCH: usize = 64;
/// Longest idle timeout honoured (keeps deadline arithmetic far from overflow).
const MAX_TIMEOUT_SECS: u64 = 365 * 24 * 3600;

fn timeout_secs(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_TIMEOUT_SECS))
}

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
    /// A first-audio hold reached its bound.
    HoldEnd,
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
    let first_audio_hold = limits.first_audio_hold_ms.resolve(engine.device().is_cpu());
    let mut session = Session {
        _open: WsSessionGuard::new(state.metrics().clone()),
        state,
        engine,
        limits,
        config,
        out: outgoing,
        slots: SessionSlots::new(limits.max_session_slot_percent),
        contexts: BTreeMap::new(),
        next_num: 1,
        last_activity: Instant::now(),
        draining: false,
        first_audio_hold,
        held_since: None,
        batching: false,
    };
    if let Err(Ended::Closed) = session.run(&mut incoming).await {
        session.contexts.clear();
        let answer =
            async { while !matches!(incoming.next().await, None | Some(Incoming::Close)) {} };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, answer).await;
    }
}

struct Session<Tx> {
    state: AppState,
    engine: EngineHandle,
    limits: Limits,
    config: SessionConfig,
    out: Tx,
    slots: SessionSlots,
    contexts: BTreeMap<String, Context>,
    next_num: u32,
    last_activity: Instant,
    draining: bool,
    /// The longest a context's first audio may hold back reading (see the module docs).
    first_audio_hold: Duration,
    /// Since when reading is held back, while it is.
    held_since: Option<Instant>,
    /// While true, text for a context that already has one is queued in its backlog, not
    /// pushed to the engine; [`Session::push_batched`] pushes it when the batch ends.
    batching: bool,
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
        let ready = Ready::new(self.engine.info(), &self.limits, self.config.clone());
        self.event(ServerEvent::SessionReady(Box::new(ready)))
            .await?;
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
            let hold = self.first_audio_hold_until();
            if self.note_hold(hold.is_some()) {
                // What arrived meanwhile first: the idle timeouts do not see a client as idle
                // because its messages waited unread.
                self.on_arrived(incoming).await?;
                continue;
            }
            // While reading is held, the idle timeouts wait: the client may be sending.
            let deadline = hold.unwrap_or_else(|| self.next_deadline());
            let deadline = tokio::time::Instant::from_std(deadline);
            let wake = tokio::select! {
                item = incoming.next(), if hold.is_none() => Wake::Client(item),
                (id, event) = next_engine_event(&mut self.contexts) => Wake::Engine(id, event),
                () = tokio::time::sleep_until(deadline) => match hold {
                    Some(_) => Wake::HoldEnd,
                    None => Wake::Timer,
                },
                changed = drain.changed(), if drain_open && !self.draining => {
                    Wake::Drain(changed.is_ok())
                }
            };
            match wake {
                Wake::Client(item) => {
                    self.on_client(item).await?;
                    self.on_arrived(incoming).await?;
                }
                Wake::Engine(id, event) => self.on_engine(&id, event).await?,
                Wake::Timer => self.on_timer().await?,
                Wake::HoldEnd => {}
                Wake::Drain(true) => self.start_draining().await?,
                Wake::Drain(false) => drain_open = false,
            }
        }
    }

    /// Handles the client messages that already arrived (at most [`CLIENT_BATCH`]), without
    /// waiting for more, then pushes their text: a client streaming words faster than the
    /// service takes them has its words merged into one push per context and batch, instead
    /// of one tokenizer pass and one engine command per word (a 10,000-character text sent
    /// word by word is 1,700 messages). Nothing waits for a message that has not arrived, and
    /// a context's first text is pushed at once (first audio starts from it).
    async fn on_arrived<Rx>(&mut self, incoming: &mut Rx) -> Flow
    where
        Rx: Stream<Item = Incoming> + Unpin,
    {
        self.batching = true;
        let mut handled = Ok(());
        for _ in 0..CLIENT_BATCH {
            let Some(item) = incoming.next().now_or_never() else {
                break;
            };
            handled = self.on_client(item).await;
            if handled.is_err() {
                break;
            }
        }
        self.batching = false;
        handled?;
        self.push_batched().await
    }

    fn session_idle(&self) -> Duration {
        timeout_secs(self.limits.session_idle_timeout_secs)
    }

    fn context_idle(&self) -> Duration {
        timeout_secs(self.limits.context_idle_timeout_secs)
    }

    /// Until when reading client messages waits for a context's first audio (the earliest
    /// end of the holds in force), if it does.
    fn first_audio_hold_until(&mut self) -> Option<Instant> {
        if self.first_audio_hold.is_zero() {
            return None;
        }
        let now = Instant::now();
        let hold = self.first_audio_hold;
        self.contexts
            .values_mut()
            .filter_map(|c| c.first_audio_hold(hold, now))
            .filter(|&end| end > now)
            .min()
    }

    /// Starts or ends the hold's clock; an ended hold is observed in
    /// `vibevoice_first_audio_hold_seconds`. True when a hold just ended.
    fn note_hold(&mut self, holding: bool) -> bool {
        match (holding, self.held_since) {
            (true, None) => self.held_since = Some(Instant::now()),
            (false, Some(since)) => {
                self.held_since = None;
                (self.state.metrics().first_audio_hold_seconds)
                    .observe(since.elapsed().as_secs_f64());
                return true;
            }
            _ => {}
        }
        false
    }

    fn next_deadline(&self) -> Instant {
        let context_idle = self.context_idle();
        self.contexts
            .values()
            .filter_map(|c| c.idle_deadline(context_idle))
            .fold(self.last_activity + self.session_idle(), Instant::min)
    }
}
