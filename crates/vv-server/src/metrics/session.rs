//! A guard that counts one open WebSocket session in `ws_sessions_active` while it lives.

use std::sync::Arc;

use super::families::Metrics;

/// Holds one count of `ws_sessions_active`; released on drop.
pub struct WsSessionGuard(Arc<Metrics>);

impl WsSessionGuard {
    /// Counts a session as open.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.ws_sessions_active.inc();
        Self(metrics)
    }
}

impl Drop for WsSessionGuard {
    fn drop(&mut self) {
        self.0.ws_sessions_active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_while_alive() {
        let m = Arc::new(Metrics::new().unwrap());
        let a = WsSessionGuard::new(Arc::clone(&m));
        let b = WsSessionGuard::new(Arc::clone(&m));
        assert_eq!(m.ws_sessions_active.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(m.ws_sessions_active.get(), 0);
    }
}
