//! Admission control: utterance slots, taken without waiting. Their number is fixed or set by
//! the model thread from its capacity model (`crate::capacity`) after every round.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::EngineError;

/// Shared slot counter; a [`SlotGuard`] holds one slot until dropped.
#[derive(Debug)]
pub struct Slots {
    total: AtomicUsize,
    used: AtomicUsize,
    draining: AtomicBool,
    admitted: AtomicU64,
    refused: AtomicU64,
}

impl Slots {
    /// `total` slots, none used.
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicUsize::new(total.max(1)),
            used: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Takes a slot, or fails at once with `Overloaded` / `Draining`.
    pub fn try_acquire(self: &Arc<Self>) -> Result<SlotGuard, EngineError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(EngineError::Draining);
        }
        let total = self.total();
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u < total).then_some(u + 1)
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::Overloaded { total });
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(SlotGuard(Arc::clone(self)))
    }

    /// Sets the number of slots (slots in use above it are kept until released).
    pub fn set_total(&self, total: usize) {
        self.total.store(total.max(1), Ordering::SeqCst);
    }

    /// Utterances admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Utterances refused for want of a slot so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Slots in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Slots in all.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Whether a slot could be taken now.
    pub fn has_free(&self) -> bool {
        !self.is_draining() && self.used() < self.total()
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
    fn a_lower_total_refuses_new_work_and_keeps_what_is_held() {
        let slots = Slots::new(3);
        let held: Vec<_> = (0..3).map(|_| slots.try_acquire().unwrap()).collect();
        slots.set_total(1);
        assert_eq!(slots.try_acquire().unwrap_err().code(), "overloaded");
        assert_eq!(slots.used(), 3);
        drop(held);
        let one = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_err());
        drop(one);
        assert_eq!((slots.admitted(), slots.refused()), (4, 2));
    }

    #[test]
    fn draining_refuses_new_work() {
        let slots = Slots::new(2);
        slots.start_draining();
        assert_eq!(slots.try_acquire().unwrap_err().code(), "shutting_down");
    }
}
