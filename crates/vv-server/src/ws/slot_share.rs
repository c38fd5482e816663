//! The share of the engine's synthesis slots one WebSocket session may hold
//! (`max_session_slot_percent` of the current total, at least one), so that one client with
//! many contexts cannot starve the others. Every segment of the session's contexts is started
//! here and holds a [`ShareGuard`] until it ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vv_engine::{EngineHandle, SynthesisParams, UtteranceHandle};

use super::error::WsError;

/// The slots held by one session's segments.
#[derive(Debug, Clone)]
pub struct SessionSlots {
    held: Arc<AtomicUsize>,
    percent: usize,
}

/// One slot counted against the session's share; released on drop.
#[derive(Debug)]
pub struct ShareGuard(Arc<AtomicUsize>);

impl Drop for ShareGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SessionSlots {
    /// A session that may hold `percent` of the slots.
    pub fn new(percent: usize) -> Self {
        Self {
            held: Arc::new(AtomicUsize::new(0)),
            percent,
        }
    }

    /// The most slots the session may hold when the engine has `total`.
    pub fn limit(&self, total: usize) -> usize {
        (total.saturating_mul(self.percent) / 100).max(1)
    }

    /// Slots the session holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Starts an utterance for a segment, unless the session holds its share already
    /// (`session_slot_share`) or the engine refuses it (`overloaded`, ...). A share that
    /// covers every slot restricts nothing: then the engine's own limit answers.
    pub fn start(
        &self,
        engine: &EngineHandle,
        params: SynthesisParams,
    ) -> Result<(UtteranceHandle, ShareGuard), WsError> {
        let total = engine.slots_total();
        let limit = self.limit(total);
        if limit < total && self.held() >= limit {
            return Err(WsError::SessionSlotShare { limit, total });
        }
        let utterance = engine.start(params)?;
        self.held.fetch_add(1, Ordering::SeqCst);
        Ok((utterance, ShareGuard(Arc::clone(&self.held))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_a_percentage_of_the_total_and_at_least_one() {
        let half = SessionSlots::new(50);
        assert_eq!(
            [1, 2, 3, 4, 9, 64].map(|t| half.limit(t)),
            [1, 1, 1, 2, 4, 32]
        );
        assert_eq!(SessionSlots::new(100).limit(7), 7);
        assert_eq!(SessionSlots::new(1).limit(1024), 10);
    }

    #[test]
    fn guards_release_their_slot() {
        let slots = SessionSlots::new(50);
        let guards: Vec<_> = (0..3)
            .map(|_| {
                slots.held.fetch_add(1, Ordering::SeqCst);
                ShareGuard(Arc::clone(&slots.held))
            })
            .collect();
        assert_eq!(slots.held(), 3);
        drop(guards);
        assert_eq!(slots.held(), 0);
    }
}
