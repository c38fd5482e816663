//! Connection metrics: client connections open now, and those refused over a cap.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::families::register;

/// The connection families.
pub struct ConnectionMetrics {
    /// Client connections open now (WebSockets included).
    pub open: IntGauge,
    /// Connections refused, by the cap that refused them (`reason` = `max_connections` |
    /// `max_connections_per_ip`).
    pub refused_total: IntCounterVec,
}

impl ConnectionMetrics {
    /// Creates and registers the families.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            open: register(
                r,
                IntGauge::new("connections_open", "Client connections open now")?,
            )?,
            refused_total: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "connections_refused_total",
                        "Client connections refused over a connection cap",
                    ),
                    &["reason"],
                )?,
            )?,
        })
    }
}
