//! Messages from client handles to the model thread.

use std::sync::Arc;

use crate::outbox::Outbox;
use crate::params::SynthesisParams;
use crate::slots::SlotGuard;
use crate::stages::StageTimes;

/// Identifier of an utterance inside one engine.
pub type UtteranceId = u64;

/// A request to the model thread.
pub enum Command {
    /// Start an utterance (its slot is already taken).
    Start {
        id: UtteranceId,
        voice: String,
        params: SynthesisParams,
        outbox: Outbox,
        slot: SlotGuard,
        /// Its stage instants (admitted when the slot was taken).
        stages: Arc<StageTimes>,
    },
    /// Append text token ids to an utterance (tokenized by its handle, off the model thread).
    Tokens { id: UtteranceId, ids: Vec<u32> },
    /// No more text: the last ids, then synthesise the rest and finish; `short_text` asks for
    /// the warning that very short texts get.
    Close {
        id: UtteranceId,
        ids: Vec<u32>,
        short_text: bool,
    },
    /// Stop at the next frame boundary and drop what is queued.
    Cancel { id: UtteranceId },
    /// Stop the model thread.
    Shutdown,
}

impl Command {
    /// The utterance the command is about (`None` for `Shutdown`).
    pub(crate) fn utterance(&self) -> Option<UtteranceId> {
        match self {
            Command::Start { id, .. }
            | Command::Tokens { id, .. }
            | Command::Close { id, .. }
            | Command::Cancel { id } => Some(*id),
            Command::Shutdown => None,
        }
    }
}
