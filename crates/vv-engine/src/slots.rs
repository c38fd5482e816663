//! Admission control: a fixed number of utterance slots, taken without waiting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::EngineError;

/// Shared slot counter; a [`SlotGuard`] holds one slot until dropped.
#[derive(Debug)]
pub struct Slots {
    total: usize,
    used: AtomicUsize,
    draining: AtomicBool,
}

impl Slots {
    /// `total` slots, none used.
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total: total.max(1),
            used: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
        })
    }

    /// Takes a slot, or fails at once with `Overloaded` / `Draining`.
    pub fn try_acquire(self: &Arc<Self>) -> Result<SlotGuard, EngineError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(EngineError::Draining);
        }
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u < self.total).then_some(u + 1)
            })
            .map_err(|_| EngineError::Overloaded { total: self.total })?;
        Ok(SlotGuard(Arc::clone(self)))
    }

    /// Slots in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Slots in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether a slot could be taken now.
    pub fn has_free(&self) -> bool {
        !self.is_draining() && self.used() < self.total
    }

    /// Stops admitting new work.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether draining started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// One taken slot; released on drop.
#[derive(Debug)]
pub struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        /// Never more guards alive than slots, and every release frees exactly one slot.
        #[test]
        fn slots_are_never_oversubscribed(total in 1usize..6, ops in prop::collection::vec(any::<bool>(), 0..40)) {
            let slots = Slots::new(total);
            let mut held = Vec::new();
            for acquire in ops {
                if acquire {
                    match slots.try_acquire() {
                        Ok(g) => held.push(g),
                        Err(e) => { prop_assert_eq!(held.len(), total); prop_assert_eq!(e.code(), "overloaded"); }
                    }
                } else {
                    held.pop();
                }
                prop_assert_eq!(slots.used(), held.len());
            }
        }
    }

    #[test]
    fn draining_refuses_new_work() {
        let slots = Slots::new(2);
        slots.start_draining();
        assert_eq!(slots.try_acquire().unwrap_err().code(), "shutting_down");
    }
}
