//! The bounded event queue of one utterance, with slow-consumer detection.
//!
//! The model thread never blocks on a client: an audio frame is queued only while fewer than
//! `limit` frames wait unread; a warning is queued once half the budget is used; past the limit
//! the utterance is cancelled with `slow_consumer`. Two extra places are reserved so the
//! warning and the terminal event always fit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};

use crate::error::EngineError;
use crate::events::UtteranceEvent;

/// Result of queueing an audio frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// The frame was queued.
    Ok,
    /// The client is too slow; the frame was dropped and the utterance must be cancelled.
    SlowConsumer,
    /// The client is gone; the utterance must be cancelled.
    Disconnected,
}

/// Sending side, owned by the model thread.
pub struct Outbox {
    tx: mpsc::Sender<UtteranceEvent>,
    pending: Arc<AtomicUsize>,
    warned: AtomicBool,
    limit: usize,
}

/// Receiving side, owned by the client.
pub struct Inbox {
    rx: mpsc::Receiver<UtteranceEvent>,
    pending: Arc<AtomicUsize>,
}

/// A connected pair with room for `limit` unread audio frames.
pub fn outbox(limit: usize) -> (Outbox, Inbox) {
    let limit = limit.max(1);
    // futures' channel holds `buffer + 1` items per sender: reserve room for warning + terminal.
    let (tx, rx) = mpsc::channel(limit + 2);
    let pending = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            pending: Arc::clone(&pending),
            warned: AtomicBool::new(false),
            limit,
        },
        Inbox { rx, pending },
    )
}

impl Outbox {
    /// Queues an audio frame unless the client is too slow or gone.
    pub fn audio(&mut self, event: UtteranceEvent) -> Queued {
        if self.tx.is_closed() {
            return Queued::Disconnected;
        }
        let pending = self.pending.load(Ordering::SeqCst);
        if pending >= self.limit {
            return Queued::SlowConsumer;
        }
        if pending * 2 >= self.limit && !self.warned.swap(true, Ordering::SeqCst) {
            let _ = self.tx.try_send(UtteranceEvent::Warning {
                code: "slow_consumer",
                message: format!("{pending} audio frames are waiting unread"),
            });
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(event) {
            Ok(()) => Queued::Ok,
            Err(e) if e.is_disconnected() => Queued::Disconnected,
            Err(_) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                Queued::SlowConsumer
            }
        }
    }

    /// Queues a non-audio event (warning or terminal); a gone client is ignored.
    pub fn event(&mut self, event: UtteranceEvent) {
        let _ = self.tx.try_send(event);
    }

    /// Queues the terminal event for a failure.
    pub fn fail(&mut self, error: EngineError) {
        self.event(UtteranceEvent::Failed(error));
    }

    /// Whether the client dropped its side.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Inbox {
    /// The next event, or `None` once the utterance is over and everything was read.
    pub async fn next(&mut self) -> Option<UtteranceEvent> {
        let ev = self.rx.next().await;
        if let Some(UtteranceEvent::Audio { .. }) = ev {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        ev
    }

    /// Unread audio frames.
    pub fn backlog(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The events as a stream.
    pub fn into_stream(self) -> impl Stream<Item = UtteranceEvent> + Send + Unpin {
        Box::pin(futures::stream::unfold(self, |mut inbox| async move {
            inbox.next().await.map(|ev| (ev, inbox))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u32) -> UtteranceEvent {
        UtteranceEvent::Audio {
            seq,
            samples: Arc::from(vec![0.0f32; 4]),
            text_tokens: 0,
        }
    }

    #[test]
    fn slow_consumer_is_detected_after_a_warning() {
        let (mut out, mut inbox) = outbox(4);
        for i in 0..4 {
            assert_eq!(out.audio(frame(i)), Queued::Ok);
        }
        assert_eq!(out.audio(frame(4)), Queued::SlowConsumer);
        out.fail(EngineError::SlowConsumer);
        let mut kinds = Vec::new();
        futures::executor::block_on(async {
            drop(out);
            while let Some(ev) = inbox.next().await {
                kinds.push(match ev {
                    UtteranceEvent::Audio { .. } => "audio",
                    UtteranceEvent::Warning { .. } => "warning",
                    UtteranceEvent::Failed(_) => "failed",
                    _ => "other",
                });
            }
        });
        assert_eq!(
            kinds,
            ["audio", "audio", "warning", "audio", "audio", "failed"]
        );
    }

    #[test]
    fn reading_frees_budget() {
        let (mut out, mut inbox) = outbox(2);
        assert_eq!(out.audio(frame(0)), Queued::Ok);
        assert_eq!(out.audio(frame(1)), Queued::Ok);
        futures::executor::block_on(inbox.next());
        assert_eq!(inbox.backlog(), 1);
        assert_eq!(out.audio(frame(2)), Queued::Ok);
    }

    #[test]
    fn dropped_client_is_reported() {
        let (mut out, inbox) = outbox(2);
        drop(inbox);
        assert_eq!(out.audio(frame(0)), Queued::Disconnected);
    }
}
