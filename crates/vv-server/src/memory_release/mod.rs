//! Gives the allocator's free memory back to the operating system once the engine goes idle.
//!
//! Measured on the soak (`scripts/soak.sh`, glibc): the live heap is the same before and after
//! the load, but several MiB of free memory in the model thread's arena stay resident, in an
//! amount that depends on the order of the last frees, so resident memory at idle wandered by
//! up to 15%. Two glibc behaviours keep it: free space in the middle of a heap (an utterance's
//! tensors freed around longer-lived allocations) is never returned by `free`, and the free top
//! of a thread's arena is kept up to a trim threshold that grows with the largest block freed.
//! `malloc_trim(0)` returns the whole free pages of every heap (and the free top of the main
//! one), so the service trims once per idle period ([`release_when_idle`]: no utterance in
//! flight for two checks in a row, and one admitted since the last release). Making every
//! thread share one heap (glibc's `M_ARENA_MAX` 1) would let the trim return the model
//! thread's free top as well, but on a 16-core GPU host it serialised the WebSocket tasks'
//! allocations with the model thread's: rounds of 64-108 utterances took 33-163 ms instead of
//! 13-25 (H100, `scripts/gpu-check.sh`), so it is not done. Other platforms and allocators:
//! nothing to do.

use std::time::{Duration, Instant};

use tracing::debug;

use crate::state::AppState;

/// How often the engine is checked for idleness.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Decides when to release: once per idle period that follows work.
#[derive(Debug, Default)]
pub struct IdleWatch {
    /// Admissions counted at the previous check, if no utterance was in flight then.
    idle_since: Option<u64>,
    /// Admissions counted at the last release.
    released_at: Option<u64>,
}

impl IdleWatch {
    /// One check: `in_flight` utterances now and `admitted` so far; `true` when memory
    /// should be released now (idle at this check and the previous one, with nothing admitted
    /// in between, and work admitted since the last release).
    pub fn check(&mut self, in_flight: usize, admitted: u64) -> bool {
        if in_flight > 0 {
            self.idle_since = None;
            return false;
        }
        let quiet = self.idle_since == Some(admitted);
        self.idle_since = Some(admitted);
        if !quiet || self.released_at == Some(admitted) {
            return false;
        }
        self.released_at = Some(admitted);
        true
    }
}

/// Whether this build can release free heap memory (glibc on Linux).
pub const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Returns the free pages of every allocator arena to the operating system; `true` if some
/// memory was released (always `false` where unsupported).
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only takes the allocator's own locks; it is safe to call from
        // any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Bytes the allocator has handed out and not yet been given back (glibc's `mallinfo2`: in use
/// in every arena plus directly mapped blocks): the live heap, whatever free memory the
/// arenas keep resident besides. `None` where unsupported.
pub fn heap_in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics under its own locks.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Checks the engine every [`CHECK_EVERY`] and releases free memory once per idle period
/// (runs until the runtime stops; returns at once where releasing is unsupported).
pub async fn release_when_idle(state: AppState) {
    if !SUPPORTED {
        return;
    }
    let mut watch = IdleWatch::default();
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(engine) = state.loaded_engine() else {
            continue;
        };
        if watch.check(engine.slots_used(), engine.admitted()) {
            let started = Instant::now();
            let released = tokio::task::spawn_blocking(release_free_memory)
                .await
                .unwrap_or(false);
            debug!(
                released,
                micros = started.elapsed().as_micros() as u64,
                "idle: free heap memory returned to the system"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdleWatch;

    #[test]
    fn releases_once_per_idle_period_after_work() {
        let mut w = IdleWatch::default();
        // Work in flight: never.
        assert!(!w.check(2, 5));
        assert!(!w.check(1, 6));
        // Idle for the first check: not yet (a new utterance may be about to start).
        assert!(!w.check(0, 6));
        // Idle for a second check with nothing admitted in between: release.
        assert!(w.check(0, 6));
        // Still idle, nothing new: not again.
        assert!(!w.check(0, 6));
        assert!(!w.check(0, 6));
        // Admitted and finished between two checks: the quiet check comes first.
        assert!(!w.check(0, 7));
        assert!(w.check(0, 7));
    }

    #[test]
    fn back_to_back_work_is_not_interrupted() {
        let mut w = IdleWatch::default();
        // Slots momentarily free but new admissions at every check: no release.
        for admitted in 1..20 {
            assert!(!w.check(0, admitted));
        }
        assert!(!w.check(3, 20));
        assert!(!w.check(0, 21));
        assert!(w.check(0, 21));
    }

    #[test]
    fn once_after_loading_then_only_after_work() {
        // The first idle period follows the model's load and warm-up.
        let mut w = IdleWatch::default();
        assert!(!w.check(0, 0));
        assert!(w.check(0, 0));
        for _ in 0..5 {
            assert!(!w.check(0, 0));
        }
    }
}
