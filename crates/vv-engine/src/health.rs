//! Liveness of the model thread: a heartbeat it stamps every loop (an idle thread still stamps
//! at its poll interval) and how it ended, read by the engine handle as [`EngineHealth`].

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the model thread is doing, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineHealth {
    /// It stamped its heartbeat recently.
    Running,
    /// It is alive but has not stamped its heartbeat for `silent` (stuck in a step or a
    /// command), at least the configured stall bound.
    Stalled {
        /// Time since the last stamp.
        silent: Duration,
    },
    /// It ended on a fault (a panic that escaped, or a device that keeps failing).
    Dead,
    /// It was stopped on purpose (shutdown, or every handle gone).
    Stopped,
}

impl EngineHealth {
    /// Whether the engine can serve.
    pub fn is_running(self) -> bool {
        self == EngineHealth::Running
    }

    /// Stable snake_case label (`/ready`'s `engine` field, logs).
    pub fn code(self) -> &'static str {
        match self {
            EngineHealth::Running => "running",
            EngineHealth::Stalled { .. } => "stalled",
            EngineHealth::Dead => "dead",
            EngineHealth::Stopped => "stopped",
        }
    }
}

const RUNNING: u8 = 0;
const DEAD: u8 = 1;
const STOPPED: u8 = 2;

/// The model thread's heartbeat, shared with the engine handles.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last stamp.
    last: AtomicU64,
    state: AtomicU8,
}

impl Heartbeat {
    /// A heartbeat stamped now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            state: AtomicU8::new(RUNNING),
        })
    }

    /// Stamps the current time.
    pub(crate) fn beat(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::SeqCst);
    }

    /// Records how the thread ended (the first record wins).
    pub(crate) fn end(&self, clean: bool) {
        let state = if clean { STOPPED } else { DEAD };
        let _ = self
            .state
            .compare_exchange(RUNNING, state, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The health, calling a thread silent for `stall` or longer stalled.
    pub(crate) fn health(&self, stall: Duration) -> EngineHealth {
        match self.state.load(Ordering::SeqCst) {
            DEAD => EngineHealth::Dead,
            STOPPED => EngineHealth::Stopped,
            _ => {
                let last = Duration::from_millis(self.last.load(Ordering::SeqCst));
                let silent = self.epoch.elapsed().saturating_sub(last);
                if silent >= stall {
                    EngineHealth::Stalled { silent }
                } else {
                    EngineHealth::Running
                }
            }
        }
    }
}

/// Marks the heartbeat dead when dropped unless [`ExitGuard::clean`] was called first, so a
/// panic that escapes the model thread is seen as a death.
pub(crate) struct ExitGuard(pub(crate) Arc<Heartbeat>);

impl ExitGuard {
    /// Records how the thread ended on purpose.
    pub(crate) fn finish(self, clean: bool) {
        self.0.end(clean);
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.end(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_bound_is_a_stall_and_endings_stick() {
        let beat = Heartbeat::new();
        beat.beat();
        assert_eq!(beat.health(Duration::from_secs(60)), EngineHealth::Running);
        std::thread::sleep(Duration::from_millis(30));
        assert!(matches!(
            beat.health(Duration::from_millis(10)),
            EngineHealth::Stalled { silent } if silent >= Duration::from_millis(20)
        ));
        beat.beat();
        assert!(beat.health(Duration::from_millis(20)).is_running());
        ExitGuard(Arc::clone(&beat)).finish(true);
        assert_eq!(beat.health(Duration::ZERO), EngineHealth::Stopped);
        beat.end(false);
        assert_eq!(beat.health(Duration::ZERO), EngineHealth::Stopped);
    }

    #[test]
    fn a_guard_dropped_without_finishing_marks_death() {
        let beat = Heartbeat::new();
        let guard = ExitGuard(Arc::clone(&beat));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("escaped");
        }));
        assert_eq!(beat.health(Duration::from_secs(60)), EngineHealth::Dead);
    }
}
