//! Graceful shutdown: on SIGINT/SIGTERM stop admitting work (`/ready` -> 503, new utterances
//! -> 503 `shutting_down`, WebSocket sessions are told through the drain signal), let the
//! utterances in flight finish for up to `shutdown_grace_secs`, then stop.

use std::time::Duration;

use tokio::time::{sleep, Instant};
use tracing::{info, warn};

use crate::state::AppState;

/// How often the drain checks for utterances in flight.
const DRAIN_POLL: Duration = Duration::from_millis(25);

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM. If no handler can be installed it
/// never resolves (the service then stops only when killed), after logging why.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}

/// What draining achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every utterance in flight finished.
    Idle,
    /// The grace period ran out with this many utterances still in flight.
    GraceExpired(usize),
}

/// Starts draining and waits until no utterance is in flight or `grace` has passed.
pub async fn drain(state: &AppState, grace: Duration) -> Drained {
    state.start_draining();
    let in_flight = state.in_flight();
    info!(
        in_flight,
        grace_secs = grace.as_secs_f64(),
        "draining before shutdown"
    );
    let deadline = Instant::now() + grace;
    loop {
        let in_flight = state.in_flight();
        if in_flight == 0 {
            info!("drained: no utterance in flight");
            return Drained::Idle;
        }
        if Instant::now() >= deadline {
            warn!(
                in_flight,
                "grace period over; stopping with utterances in flight"
            );
            return Drained::GraceExpired(in_flight);
        }
        sleep(DRAIN_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[tokio::test]
    async fn draining_without_engine_is_immediate() {
        let state = AppState::new(Settings::default()).unwrap();
        let outcome = drain(&state, Duration::from_secs(5)).await;
        assert_eq!(outcome, Drained::Idle);
        assert!(state.is_draining());
        assert!(!state.is_ready());
    }
}
