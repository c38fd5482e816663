//! The serving loop: accepts connections (TCP_NODELAY on), admits them under the caps,
//! serves each on its own task with hyper's HTTP/1 (upgrades included) behind the socket
//! deadlines; once `shutdown` resolves it stops accepting, asks every connection to finish
//! its current request, and returns when they all ended. Upgraded connections (WebSockets)
//! are no longer HTTP connections: their sessions follow the drain signal of the app state.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, error, trace, warn};

use super::activity::Activity;
use super::admission::Admission;
use super::refusal::Refuser;
use super::service::ConnService;
use super::timed_io::TimedIo;
use super::ConnectionLimits;
use crate::metrics::Metrics;

/// Pause after an accept error that is not about one connection (e.g. out of file handles).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves and every connection has ended.
pub async fn serve_connections<F>(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let admission = Admission::new(
        limits.max_connections,
        limits.max_connections_per_ip,
        metrics.connections.open.clone(),
    );
    let refuser = Refuser::new(metrics);
    let mut builder = http1::Builder::new();
    // Head and keep-alive deadlines are the socket's (see `activity`), not hyper's.
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (an event, then a frame) go out at once: without TCP_NODELAY a frame
        // written right after a small event waits for the client's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "could not set TCP_NODELAY on a connection");
        }
        match admission.admit(peer.ip()) {
            Ok(permit) => {
                let activity = Activity::new();
                let io = TimedIo::new(tcp, Arc::clone(&activity), limits.timeouts, Some(permit));
                let service =
                    ConnService::new(router.clone(), activity, limits.timeouts.header_read);
                let connection = Connection {
                    builder: builder.clone(),
                    stop: stop_rx.clone(),
                    _done: done_rx.clone(),
                };
                tokio::spawn(connection.serve(io, service, peer));
            }
            Err(why) => refuser.refuse(tcp, peer, why),
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    trace!(
        connections = done_tx.receiver_count(),
        "waiting for connections to end"
    );
    done_tx.closed().await;
}

/// One connection's task context.
struct Connection {
    builder: http1::Builder,
    stop: watch::Receiver<bool>,
    /// Dropped when the connection ends (the loop waits for all of them).
    _done: watch::Receiver<()>,
}

impl Connection {
    async fn serve(mut self, io: TimedIo<TcpStream>, service: ConnService, peer: SocketAddr) {
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut conn = pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        debug!(peer = %peer, "connection ended: {e}");
                    }
                    return;
                }
                _ = self.stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Handles an accept error: per-connection errors are skipped, others are logged and
/// followed by a pause (as axum's serving loop does).
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    error!("accepting a connection failed: {e}");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
