//! The time frame of one level: the origin every recorded time is measured from, its
//! deadline, and the waits bounded by both.

use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// A session or request that receives nothing for this long is ended with `timeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an error ended a context, request or session before the next one (the
/// `Retry-After` the server sends with `overloaded`).
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Start and deadline of a level.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    length: Duration,
}

impl Clock {
    /// A level of `length` starting now.
    pub fn start(length: Duration) -> Self {
        Self {
            origin: Instant::now(),
            length,
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Whether the deadline has passed.
    pub fn is_over(&self) -> bool {
        self.elapsed() >= self.length
    }

    /// The end of a stream that stops now: the time since the start, at most the length.
    pub fn end(&self) -> Duration {
        self.elapsed().min(self.length)
    }

    /// When a wait of `wait` starting now ends: after `wait` or at the deadline, whichever
    /// comes first.
    pub fn wake_at(&self, wait: Duration) -> Instant {
        (Instant::now() + wait).min(self.origin + self.length)
    }

    /// Sleeps for `wait`, or until the deadline if that comes first.
    pub async fn pause(&self, wait: Duration) {
        sleep_until(self.wake_at(wait)).await;
    }
}
