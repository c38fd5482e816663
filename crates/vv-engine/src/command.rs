//! Messages from client handles to the model thread.

use std::time::Instant;

use crate::outbox::Outbox;
use crate::params::SynthesisParams;
use crate::slots::SlotGuard;

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
        queued_at: Instant,
    },
    /// Append text to an utterance.
    Text { id: UtteranceId, text: String },
    /// No more text: synthesise the rest and finish.
    Close { id: UtteranceId },
    /// Stop at the next frame boundary and drop what is queued.
    Cancel { id: UtteranceId },
    /// Stop the model thread.
    Shutdown,
}
