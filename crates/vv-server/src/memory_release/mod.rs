//! Gives the allocator's free memory back to the operating system once the engine goes idle,
//! and reads the live heap for `/metrics`.
//!
//! The service's allocator: CUDA builds link jemalloc (feature `jemalloc`, `jemalloc.rs`),
//! others run on the platform's (glibc's on Linux, `glibc.rs`). Measured on the soak
//! (`scripts/soak.sh`) with glibc: the live heap is the same before and after the load, but
//! several MiB of free memory stay resident in the arenas, in an amount that depends on the
//! order of the last frees (resident memory at idle wandered by up to 15%, and grew 11% over
//! an hour). glibc keeps free space in the middle of a heap (an utterance's tensors freed
//! around longer-lived allocations) until `malloc_trim(0)`, and the free top of every thread's
//! arena but the main one even then; one heap for every thread (`M_ARENA_MAX` 1) would let the
//! trim reach it, but on a 16-core GPU host it serialised the WebSocket tasks' allocations with
//! the model thread's (rounds of 64-108 utterances took 33-163 ms instead of 13-25 on an H100).
//! jemalloc returns any page it has not used for a second from a background thread, in every
//! arena, without a shared lock (an hour's soak: resident memory -0.6%); but the CPU model's
//! frames took 10-20% longer on it (its memory on 4 KiB pages; with transparent huge pages it
//! is as fast as glibc but returns memory in 2 MiB steps, +9% resident over an hour), so only
//! CUDA builds, whose frames run on the GPU, use all of it; CPU builds use it for allocations
//! under 16 KiB (feature `small-jemalloc`, `split.rs`: as fast as glibc) and put glibc's share,
//! the large blocks only, on one arena, which the trim reaches whole (a 4-minute soak: +9.4%
//! resident on thread arenas, +0.18% on one arena). Either way the service also releases once
//! per idle period ([`release_when_idle`]: no utterance in flight for two checks in a row, and
//! one admitted since the last release).

// The backend: jemalloc where the feature `jemalloc` (all of it) or `small-jemalloc` (jemalloc
// for small blocks, glibc for the rest: `split.rs`) is on (Linux only), else glibc's allocator
// on Linux, else none. Each file gives `SUPPORTED`, `NAME`, `release_free_memory`,
// `heap_in_use_bytes`.
#[cfg(all(
    any(
        feature = "jemalloc",
        all(feature = "small-jemalloc", target_env = "gnu")
    ),
    target_os = "linux"
))]
#[path = "jemalloc.rs"]
mod backend;
// glibc's side, the backend itself or (split allocator) its large-block half; unused under
// whole jemalloc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[cfg_attr(
    any(feature = "jemalloc", feature = "small-jemalloc"),
    allow(dead_code)
)]
mod glibc;
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(feature = "jemalloc"),
    not(feature = "small-jemalloc")
))]
use glibc as backend;
#[cfg(all(
    feature = "small-jemalloc",
    not(feature = "jemalloc"),
    target_os = "linux",
    target_env = "gnu"
))]
mod split;
#[cfg(not(any(
    all(target_os = "linux", target_env = "gnu"),
    all(feature = "jemalloc", target_os = "linux")
)))]
mod backend {
    //! No allocator control: nothing to release, no live-heap figure.
    pub const SUPPORTED: bool = false;
    pub const NAME: &str = "system";
    pub fn release_free_memory() -> bool {
        false
    }
    pub fn heap_in_use_bytes() -> Option<u64> {
        None
    }
}

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

/// Whether this build can release free heap memory (glibc or jemalloc).
pub const SUPPORTED: bool = backend::SUPPORTED;

/// The allocator this build uses: `jemalloc`, `glibc` or `system`.
pub const ALLOCATOR: &str = backend::NAME;

/// Returns the allocator's free pages to the operating system; `true` if it did (always
/// `false` where unsupported).
pub fn release_free_memory() -> bool {
    backend::release_free_memory()
}

/// Bytes the allocator has handed out and not yet been given back: the live heap, whatever
/// free memory the allocator keeps resident besides. `None` where unsupported.
pub fn heap_in_use_bytes() -> Option<u64> {
    backend::heap_in_use_bytes()
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
