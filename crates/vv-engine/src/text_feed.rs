//! An utterance's text input. Text is tokenized in pieces of [`TOKENIZE_PIECE`] bytes and the
//! ids that became final go to the model thread after each piece. A push's first piece is
//! tokenized on the caller's thread; the rest of a longer push, and every push and the close
//! after it, go to a helper thread of the utterance that tokenizes them in order. So a caller
//! that also forwards the utterance's audio (a WebSocket session, an HTTP body) returns at
//! once: the first window starts from the first piece, and first audio never waits for the
//! tokenizer to get through a long text. The feed counts the ids sent, so its caller knows
//! when the model thread has its first window's text.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use vv_model::generation::TEXT_WINDOW;
use vv_model::text::{IncrementalTokenizer, TextTokenizer};

use crate::command::{Command, UtteranceId};
use crate::error::EngineError;

/// Bytes of text tokenized before the ids found so far are sent to the model thread.
pub(crate) const TOKENIZE_PIECE: usize = 256;

/// `text` cut into consecutive pieces of about `size` bytes, at character boundaries.
pub(crate) fn pieces(text: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = size.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// What the helper thread is asked to do, in order.
enum Op {
    Text(String),
    Close { short_text: bool },
}

/// What tokenizing needs: the utterance, the model thread's queue, the tokenizer and its state.
struct Tokenizing {
    id: UtteranceId,
    commands: SyncSender<Command>,
    tokenizer: Arc<TextTokenizer>,
    state: IncrementalTokenizer,
    /// Ids sent to the model thread so far (shared with the feed, whichever thread sends).
    sent: Arc<AtomicUsize>,
}

impl Tokenizing {
    /// Tokenizes `text` piece by piece, sending each piece's final ids with `send`.
    fn text(
        &mut self,
        text: &str,
        send: &mut impl FnMut(Command) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        for piece in pieces(text, TOKENIZE_PIECE) {
            let ids = self.state.push(&self.tokenizer, piece)?;
            if !ids.is_empty() {
                let count = ids.len();
                send(Command::Tokens { id: self.id, ids })?;
                self.sent.fetch_add(count, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Tokenizes what was held back and ends the input.
    fn close(
        &mut self,
        short_text: bool,
        send: &mut impl FnMut(Command) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let ids = self.state.finish(&self.tokenizer)?;
        send(Command::Close {
            id: self.id,
            ids,
            short_text,
        })
    }

    /// The helper thread's loop: the operations in order; a full queue waits (this thread
    /// only feeds this utterance); the first failure is kept for the handle and ends the loop.
    fn serve(
        mut self,
        ops: std::sync::mpsc::Receiver<Op>,
        failed: Arc<Mutex<Option<EngineError>>>,
    ) {
        let commands = self.commands.clone();
        let mut send = |cmd: Command| commands.send(cmd).map_err(|_| EngineError::Unavailable);
        for op in ops {
            let done = match op {
                Op::Text(text) => self.text(&text, &mut send),
                Op::Close { short_text } => self.close(short_text, &mut send),
            };
            if let Err(e) = done {
                *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                return;
            }
        }
    }
}

/// The input side of one utterance (see the module docs).
pub(crate) struct TextFeed {
    /// The tokenizer state while the caller's thread tokenizes.
    local: Option<Tokenizing>,
    /// The helper thread's queue, once a long push started it.
    helper: Option<Sender<Op>>,
    /// The helper thread's first failure.
    failed: Arc<Mutex<Option<EngineError>>>,
    /// Ids sent to the model thread so far.
    sent: Arc<AtomicUsize>,
    closed: bool,
}

impl TextFeed {
    pub(crate) fn new(
        id: UtteranceId,
        commands: SyncSender<Command>,
        tokenizer: Arc<TextTokenizer>,
    ) -> Self {
        let sent = Arc::new(AtomicUsize::new(0));
        Self {
            local: Some(Tokenizing {
                id,
                commands,
                tokenizer,
                state: IncrementalTokenizer::new(),
                sent: Arc::clone(&sent),
            }),
            helper: None,
            failed: Arc::new(Mutex::new(None)),
            sent,
            closed: false,
        }
    }

    /// Whether the model thread has the text of the utterance's first window, or gets it
    /// without more input: a window's ids were sent, or the input is closed.
    pub(crate) fn first_window_fed(&self) -> bool {
        self.closed || self.sent.load(Ordering::Relaxed) >= TEXT_WINDOW
    }

    /// The helper thread's failure, if it had one.
    pub(crate) fn failure(&self) -> Option<EngineError> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Appends `text`; `send` queues a command from the caller's thread.
    pub(crate) fn push(
        &mut self,
        text: &str,
        send: &mut impl FnMut(Command) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        if let Some(helper) = &self.helper {
            return helper
                .send(Op::Text(text.to_owned()))
                .map_err(|_| self.failure().unwrap_or(EngineError::Unavailable));
        }
        let Some(local) = self.local.as_mut() else {
            return Err(EngineError::internal("the text input was lost"));
        };
        let first = pieces(text, TOKENIZE_PIECE).next().unwrap_or_default();
        local.text(first, send)?;
        let rest = &text[first.len()..];
        if !rest.is_empty() {
            self.hand_over(rest)?;
        }
        Ok(())
    }

    /// Ends the input (a second call does nothing).
    pub(crate) fn close(
        &mut self,
        short_text: bool,
        send: &mut impl FnMut(Command) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        if let Some(helper) = &self.helper {
            return helper
                .send(Op::Close { short_text })
                .map_err(|_| self.failure().unwrap_or(EngineError::Unavailable));
        }
        match self.local.as_mut() {
            Some(local) => local.close(short_text, send),
            None => Err(EngineError::internal("the text input was lost")),
        }
    }

    /// Starts the helper thread with the tokenizer state and `rest` as its first operation.
    fn hand_over(&mut self, rest: &str) -> Result<(), EngineError> {
        let Some(tokenizing) = self.local.take() else {
            return Err(EngineError::internal("the text input was lost"));
        };
        let (tx, rx) = channel();
        let failed = Arc::clone(&self.failed);
        // The queue is unbounded but fed only by this handle's own calls, each bounded by the
        // message and text limits of the routes.
        let _ = tx.send(Op::Text(rest.to_owned()));
        std::thread::Builder::new()
            .name(format!("vv-tokenize-{}", tokenizing.id))
            .spawn(move || tokenizing.serve(rx, failed))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start a tokenizer thread");
                EngineError::internal("cannot start a tokenizer thread")
            })?;
        self.helper = Some(tx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_cover_the_text_in_order_at_character_boundaries() {
        let text = "héllo wörld, ünïcödé ".repeat(40);
        for size in [1, 7, 256, 10_000] {
            let parts: Vec<&str> = pieces(&text, size).collect();
            assert_eq!(parts.concat(), text);
            assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= size + 3));
        }
        assert_eq!(pieces("", 4).count(), 0);
    }
}
