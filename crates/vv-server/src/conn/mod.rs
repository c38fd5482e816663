//! Client connections: the serving loop with connection caps, per-connection deadlines
//! (request head and body, keep-alive idle, blocked writes) and cheap refusal over the caps.
//!
//! - [`accept`]: the serving loop and graceful shutdown.
//! - [`admission`]: the global and per-IP connection caps.
//! - [`activity`]: what a connection is doing (waiting for a request, busy, upgraded) and
//!   which read deadline applies.
//! - [`timed_io`]: the socket wrapper that enforces the read and write deadlines.
//! - [`service`] / [`body`]: the router per connection, marking requests busy and holding
//!   request bodies to a deadline.
//! - [`refusal`]: the 503 for connections over a cap.

pub mod accept;
pub mod activity;
pub mod admission;
pub mod body;
pub mod refusal;
pub mod service;
pub mod timed_io;

use std::time::Duration;

pub use accept::serve_connections;
pub use activity::Timeouts;

use crate::config::Limits;

/// The connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Read and write deadlines.
    pub timeouts: Timeouts,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections per client address.
    pub max_connections_per_ip: usize,
}

impl ConnectionLimits {
    /// The connection settings of `limits`.
    pub fn from_limits(limits: &Limits) -> Self {
        Self {
            timeouts: Timeouts {
                header_read: Duration::from_secs(limits.header_read_timeout_secs),
                keepalive_idle: Duration::from_secs(limits.keepalive_idle_timeout_secs),
                write: Duration::from_secs(limits.write_timeout_secs),
            },
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
        }
    }
}
