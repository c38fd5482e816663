//! What one connection is doing, shared by its request service (which marks a request busy
//! from its head to the end of its response body, and marks upgrades) and its socket
//! wrapper (which asks for the read deadline that applies while it waits for bytes).
//!
//! While no request is in progress the connection waits for a request head: the first one
//! within `header_read` of the accept, later ones within `keepalive_idle` of the previous
//! response; once a head's first byte arrived, the rest of it within `header_read` of that
//! byte. Busy and upgraded connections have no read deadline (request bodies have their own,
//! WebSocket sessions their idle timeouts).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::time::Instant;

/// The connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For a request head (and, separately, its body).
    pub header_read: Duration,
    /// For the next request on a keep-alive connection.
    pub keepalive_idle: Duration,
    /// For a blocked write.
    pub write: Duration,
}

/// Which read deadline applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadDeadline {
    /// A request head must be complete by then.
    Head(Instant),
    /// The next request must start by then.
    KeepAlive(Instant),
}

impl ReadDeadline {
    /// The instant.
    pub fn at(self) -> Instant {
        match self {
            ReadDeadline::Head(at) | ReadDeadline::KeepAlive(at) => at,
        }
    }

    /// What timed out, for the log.
    pub fn what(self) -> &'static str {
        match self {
            ReadDeadline::Head(_) => "request head not received within header_read_timeout_secs",
            ReadDeadline::KeepAlive(_) => "keep-alive connection idle past its timeout",
        }
    }
}

/// The shared state of one connection.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    reader: AtomicWaker,
}

#[derive(Debug)]
struct State {
    busy: usize,
    upgraded: bool,
    served: bool,
    idle_since: Instant,
    head_started: Option<Instant>,
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                busy: 0,
                upgraded: false,
                served: false,
                idle_since: Instant::now(),
                head_started: None,
            }),
            reader: AtomicWaker::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The deadline for the bytes the connection waits for, if one applies; `waker` is woken
    /// when that may change (a request ends).
    pub fn read_deadline(&self, timeouts: &Timeouts, waker: &Waker) -> Option<ReadDeadline> {
        self.reader.register(waker);
        let state = self.state();
        if state.busy > 0 || state.upgraded {
            return None;
        }
        Some(match state.head_started {
            Some(first_byte) => ReadDeadline::Head(first_byte + timeouts.header_read),
            None if !state.served => ReadDeadline::Head(state.idle_since + timeouts.header_read),
            None => ReadDeadline::KeepAlive(state.idle_since + timeouts.keepalive_idle),
        })
    }

    /// Bytes arrived: between requests, the head's clock starts.
    pub fn bytes_read(&self) {
        let mut state = self.state();
        if state.busy == 0 && !state.upgraded && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
        }
    }

    /// A request head was received; the connection is busy until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        let mut state = self.state();
        state.busy += 1;
        state.served = true;
        state.head_started = None;
        Busy(Arc::clone(self))
    }

    /// The connection was upgraded (WebSocket): no more read deadlines.
    pub fn upgraded(&self) {
        self.state().upgraded = true;
    }
}

/// A request in progress (its head received, its response not yet fully written).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.busy -= 1;
        if state.busy == 0 {
            state.idle_since = Instant::now();
        }
        drop(state);
        self.0.reader.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        keepalive_idle: Duration::from_secs(60),
        write: Duration::from_secs(15),
    };

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection_phases() {
        let waker = noop_waker();
        let accepted = Instant::now();
        let activity = Activity::new();
        let deadline = || activity.read_deadline(&T, &waker);
        assert_eq!(
            deadline(),
            Some(ReadDeadline::Head(accepted + T.header_read))
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        let first_byte = Instant::now();
        activity.bytes_read();
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.bytes_read();
        assert_eq!(
            deadline(),
            Some(ReadDeadline::Head(first_byte + T.header_read))
        );

        let busy = activity.begin();
        activity.bytes_read();
        assert_eq!(deadline(), None, "a busy connection has no read deadline");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(busy);
        let idle = Instant::now();
        assert_eq!(
            deadline(),
            Some(ReadDeadline::KeepAlive(idle + T.keepalive_idle))
        );

        let upgrade = activity.begin();
        activity.upgraded();
        drop(upgrade);
        assert_eq!(
            deadline(),
            None,
            "an upgraded connection has no read deadline"
        );
    }
}
