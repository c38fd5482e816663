//! Client-side handles: the engine (start utterances, inspect state) and one utterance
//! (append text, close, cancel, read events). Dropping an utterance handle cancels it. An
//! utterance's text is tokenized by its handle, on the caller's thread, so the model thread
//! only appends token ids: a long text costs its own client the tokenizer's time, not every
//! stream a delayed round. Held-back text is bounded (see `vv_model::text::MAX_HELD_BYTES`),
//! so each push costs in proportion to its text, not to the text pending.
//!
//! A command the model thread never received (queue full, thread gone) ends the utterance on
//! the spot: the caller gets the error, the handle drops its event queue so that the model
//! thread frees the slot at its next loop, and no terminal event follows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;

use vv_model::text::{normalize_chars, TextTokenizer};

use crate::capacity::{CapacityModel, CapacityReport};
use crate::command::{Command, UtteranceId};
use crate::error::EngineError;
use crate::events::UtteranceEvent;
use crate::health::{EngineHealth, Heartbeat};
use crate::info::EngineInfo;
use crate::outbox::{outbox, Inbox};
use crate::params::SynthesisParams;
use crate::slots::Slots;
use crate::stages::StageTimes;
use crate::text_feed::TextFeed;

/// Queues a command for the model thread without blocking the caller.
fn dispatch(tx: &SyncSender<Command>, cmd: Command) -> Result<(), EngineError> {
    match tx.try_send(cmd) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(EngineError::QueueFull),
        Err(TrySendError::Disconnected(_)) => Err(EngineError::Unavailable),
    }
}

/// Cheap, cloneable access to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    commands: SyncSender<Command>,
    tokenizer: Arc<TextTokenizer>,
    slots: Arc<Slots>,
    capacity: Arc<CapacityModel>,
    info: Arc<EngineInfo>,
    device: Device,
    next_id: Arc<AtomicU64>,
    max_buffered_frames: usize,
    heartbeat: Arc<Heartbeat>,
    stall_timeout: Duration,
}

impl EngineHandle {
    // Internal constructor called once, from `start_engine_with_faults`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        commands: SyncSender<Command>,
        tokenizer: Arc<TextTokenizer>,
        slots: Arc<Slots>,
        capacity: Arc<CapacityModel>,
        info: Arc<EngineInfo>,
        device: Device,
        max_buffered_frames: usize,
        heartbeat: Arc<Heartbeat>,
        stall_timeout: Duration,
    ) -> Self {
        Self {
            commands,
            tokenizer,
            slots,
            capacity,
            info,
            device,
            next_id: Arc::new(AtomicU64::new(1)),
            max_buffered_frames,
            heartbeat,
            stall_timeout,
        }
    }

    /// Whether the model thread runs, is stuck (no heartbeat for the stall bound), died on a
    /// fault or was stopped.
    pub fn health(&self) -> EngineHealth {
        self.heartbeat.health(self.stall_timeout)
    }

    /// What the engine runs: model, device, dtype, voices, limits.
    pub fn info(&self) -> &Arc<EngineInfo> {
        &self.info
    }

    /// The candle device the model runs on (for memory statistics).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Utterance slots in use.
    pub fn slots_used(&self) -> usize {
        self.slots.used()
    }

    /// Utterance slots in all (with automatic slots, the capacity measured now).
    pub fn slots_total(&self) -> usize {
        self.slots.total()
    }

    /// Utterances admitted so far.
    pub fn admitted(&self) -> u64 {
        self.slots.admitted()
    }

    /// Utterances refused for want of a slot so far.
    pub fn refused(&self) -> u64 {
        self.slots.refused()
    }

    /// The capacity and the round times it rests on.
    pub fn capacity(&self) -> CapacityReport {
        self.capacity.report()
    }

    /// Whether a new utterance would be admitted now.
    pub fn has_free_slot(&self) -> bool {
        self.slots.has_free()
    }

    /// Whether draining started (no new work is admitted).
    pub fn is_draining(&self) -> bool {
        self.slots.is_draining()
    }

    /// Stops admitting new utterances; running ones go on.
    pub fn start_draining(&self) {
        self.slots.start_draining();
    }

    /// Resolves a requested voice name (or the default) to an installed voice.
    pub fn resolve_voice(&self, requested: Option<&str>) -> Result<String, EngineError> {
        self.info.resolve_voice(requested)
    }

    /// How many text tokens `text` alone becomes (normalised as utterance text is). Word
    /// timestamps count each word's tokens with this; within a longer text the tokens of a
    /// word may differ slightly, so the count is an estimate.
    pub fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
        let text = self.tokenizer.strip_specials(&normalize_chars(text));
        Ok(self.tokenizer.encode(&text)?.len())
    }

    /// Starts an utterance: takes a slot without waiting (or fails with `Overloaded`).
    pub fn start(&self, params: SynthesisParams) -> Result<UtteranceHandle, EngineError> {
        params.validate()?;
        let voice = self.resolve_voice(params.voice.as_deref())?;
        let slot = self.slots.try_acquire()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (out, inbox) = outbox(self.max_buffered_frames);
        let stages = Arc::new(StageTimes::new(Instant::now()));
        let cmd = Command::Start {
            id,
            voice,
            params,
            outbox: out,
            slot,
            stages: Arc::clone(&stages),
        };
        self.send(cmd)?;
        Ok(UtteranceHandle {
            id,
            commands: self.commands.clone(),
            text: TextFeed::new(id, self.commands.clone(), Arc::clone(&self.tokenizer)),
            words: 0,
            inbox: Some(inbox),
            ended: false,
            lost: None,
            stages,
        })
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        dispatch(&self.commands, cmd)
    }

    /// Asks the model thread to stop after the current step.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// Texts of at most this many words get a `short_text` warning (the model is unstable there).
pub const SHORT_TEXT_WORDS: usize = 3;
/// One running utterance.
pub struct UtteranceHandle {
    id: UtteranceId,
    commands: SyncSender<Command>,
    /// The text input, tokenized as it becomes final.
    text: TextFeed,
    /// Words received so far.
    words: usize,
    inbox: Option<Inbox>,
    ended: bool,
    /// Why the utterance ended on the handle's side (a command could not be queued).
    lost: Option<EngineError>,
    stages: Arc<StageTimes>,
}

impl UtteranceHandle {
    /// Engine-wide id of this utterance.
    pub fn id(&self) -> UtteranceId {
        self.id
    }

    /// When it was admitted, ran its first text window and decoded its first frame.
    pub fn stages(&self) -> &Arc<StageTimes> {
        &self.stages
    }

    fn abandon(&mut self, error: EngineError) {
        self.inbox = None;
        self.ended = true;
        self.lost = Some(error);
    }

    /// The error of an earlier command that could not be queued, or of the text input's
    /// helper thread.
    fn check_lost(&mut self) -> Result<(), EngineError> {
        if let Some(e) = self.lost.clone() {
            return Err(e);
        }
        match self.text.failure() {
            Some(e) => {
                self.abandon(e.clone());
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Appends text (any chunking gives the same audio as the whole text). The text is
    /// tokenized in pieces and the ids that became final go to the model thread after each
    /// piece; beyond its first piece a long text is tokenized off the caller's thread (see
    /// `text_feed`), so this returns at once and the first window starts from the first piece.
    pub fn push_text(&mut self, text: &str) -> Result<(), EngineError> {
        self.check_lost()?;
        self.words += text.split_whitespace().count();
        let commands = self.commands.clone();
        let pushed = self.text.push(text, &mut |cmd| dispatch(&commands, cmd));
        if let Err(e) = &pushed {
            self.abandon(e.clone());
        }
        pushed
    }

    /// Ends the input: the rest is synthesised, then `Finished` follows. Closing twice is
    /// harmless.
    pub fn close(&mut self) -> Result<(), EngineError> {
        self.check_lost()?;
        let short_text = self.words > 0 && self.words <= SHORT_TEXT_WORDS;
        let commands = self.commands.clone();
        let closed = self
            .text
            .close(short_text, &mut |cmd| dispatch(&commands, cmd));
        if let Err(e) = &closed {
            self.abandon(e.clone());
        }
        closed
    }

    /// Whether the engine has the text its first window needs, or gets it without more input
    /// (the input is closed): from then on, text still to come cannot bring the first audio
    /// sooner.
    pub fn first_window_fed(&self) -> bool {
        self.text.first_window_fed()
    }

    /// Stops at the next frame boundary; `Cancelled` follows. Never blocks: should the
    /// command queue be full, the model thread still notices the dropped inbox at the next frame.
    pub fn cancel(&mut self) {
        if !self.ended {
            let _ = self.commands.try_send(Command::Cancel { id: self.id });
        }
    }

    /// The next event; `None` after the terminal event was read (or at once when a command
    /// could not be queued: its caller got the error). Should the model thread drop the
    /// utterance without a terminal event (it panicked on it, or died), a `Failed` event
    /// with `internal_error` stands in for it.
    pub async fn next_event(&mut self) -> Option<UtteranceEvent> {
        if self.ended && self.inbox.is_none() {
            return None;
        }
        let inbox = self.inbox.as_mut()?;
        let ev = inbox.next().await;
        let lost = ev.is_none() && !self.ended;
        if ev.as_ref().is_none_or(UtteranceEvent::is_terminal) {
            self.ended = true;
        }
        if lost {
            self.inbox = None;
            return Some(UtteranceEvent::Failed(EngineError::internal(
                "the engine dropped the utterance",
            )));
        }
        ev
    }

    /// Unread audio frames.
    pub fn backlog(&self) -> usize {
        self.inbox.as_ref().map_or(0, Inbox::backlog)
    }
}

impl Drop for UtteranceHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}
