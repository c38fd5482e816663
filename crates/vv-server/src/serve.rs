//! Running the service: bind, answer `/health` at once, load and warm up the engine on its
//! own thread (`/ready` turns 200 when it is done), serve until the shutdown future resolves,
//! drain, stop the engine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tracing::{error, info, warn};
use vv_device::SystemProbe;
use vv_engine::{EngineHandle, EngineObserver, Faults, NoFaults};

use crate::app::app;
use crate::config::Settings;
use crate::conn::{serve_connections, ConnectionLimits};
use crate::engine_options::engine_options;
use crate::memory_release::release_when_idle;
use crate::metrics::{DeviceMonitor, MetricsObserver};
use crate::shutdown::{drain, shutdown_signal, Drained};
use crate::state::AppState;

/// How long connections may stay open after draining before the server stops anyway.
const CLOSE_CAP: Duration = Duration::from_secs(5);

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The metrics registry could not be built.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `host:port` as configured.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Loading or warming up the model failed.
    #[error("loading the model failed: {0}")]
    Load(String),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The model thread died or is stuck (`engine_stall_timeout_secs`): the process exits so
    /// that it can be restarted.
    #[error("the synthesis engine failed: its model thread is {0}")]
    EngineFailed(&'static str),
}

impl ServeError {
    /// Stable snake_case label.
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::Metrics(_) => "metrics_setup_failed",
            ServeError::Bind { .. } => "bind_failed",
            ServeError::Load(_) => "model_load_failed",
            ServeError::Serve(_) => "serve_failed",
            ServeError::EngineFailed(_) => "engine_failed",
        }
    }
}

/// Serves with `settings` until SIGINT or SIGTERM, then drains and returns `Ok(())`.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    serve_with_shutdown(settings, shutdown_signal()).await
}

/// Serves with `settings` until `shutdown` resolves, then drains and returns `Ok(())`.
pub async fn serve_with_shutdown<F>(settings: Settings, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    Server::bind(settings).await?.run(shutdown).await
}

/// A bound, not yet running service (lets callers learn the port before serving).
pub struct Server {
    listener: TcpListener,
    state: AppState,
    faults: Arc<dyn Faults>,
}

impl Server {
    /// Opens the listening socket on `host:port` (port 0 picks a free port).
    pub async fn bind(settings: Settings) -> Result<Self, ServeError> {
        let (host, port) = (settings.host.clone(), settings.port);
        let listener = TcpListener::bind((host.as_str(), port))
            .await
            .map_err(|source| ServeError::Bind {
                addr: format!("{host}:{port}"),
                source,
            })?;
        Ok(Self {
            listener,
            state: AppState::new(settings)?,
            faults: Arc::new(NoFaults),
        })
    }

    /// The fault seam: the model thread will call `faults` before every command and step
    /// (tests make it panic, hang or fail like a broken device; serving uses no faults).
    pub fn with_engine_faults(mut self, faults: Arc<dyn Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state the routes will share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves (or the model fails to load), then drains for up to
    /// `shutdown_grace_secs` and stops the engine.
    pub async fn run<F>(self, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Server {
            listener,
            state,
            faults,
        } = self;
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening; /health is up, the model is loading");
        }
        let grace = Duration::from_secs(state.settings().limits.shutdown_grace_secs);
        let drained = Arc::new(Notify::new());
        let graceful = {
            let (state, drained) = (state.clone(), Arc::clone(&drained));
            async move {
                shutdown.await;
                if let Drained::GraceExpired(_) = drain(&state, grace).await {
                    stop_engine(&state).await;
                }
                drained.notify_one();
            }
        };
        let server = serve_connections(
            listener,
            app(state.clone()),
            ConnectionLimits::from_limits(&state.settings().limits),
            state.metrics().clone(),
            graceful,
        );
        let close_cap = async {
            drained.notified().await;
            tokio::time::sleep(CLOSE_CAP).await;
        };
        let release = tokio::spawn(release_when_idle(state.clone()));
        let result = tokio::select! {
            () = server => Ok(()),
            failure = load_engine(state.clone(), faults) => Err(failure),
            () = close_cap => {
                warn!("connections still open after draining; stopping anyway");
                Ok(())
            }
        };
        release.abort();
        stop_engine(&state).await;
        match &result {
            Ok(()) => info!("stopped"),
            Err(e) => error!(code = e.code(), "stopped: {e}"),
        }
        result
    }
}

/// Loads the engine on a dedicated thread and installs it, then watches it; resolves only on
/// failure (of the load, or of the running engine).
async fn load_engine(state: AppState, faults: Arc<dyn Faults>) -> ServeError {
    let options = engine_options(state.settings());
    let observer: Arc<dyn EngineObserver> = Arc::new(MetricsObserver(state.metrics().clone()));
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("vv-load".to_string())
        .spawn(move || {
            let probe = SystemProbe::new();
            let loaded = vv_engine::load_engine_with_faults(&options, &probe, observer, faults);
            let _ = tx.send(loaded);
        });
    if let Err(e) = spawned {
        return ServeError::Load(format!("cannot start the loader thread: {e}"));
    }
    match rx.await {
        Ok(Ok(engine)) => {
            let info = engine.info();
            info!(
                device = %info.device.device,
                dtype = %info.device.dtype.as_str(),
                voices = info.voices.len(),
                slots = engine.slots_total(),
                load_seconds = info.model.load_seconds,
                warmup_seconds = info.model.warmup_seconds,
                "model ready"
            );
            let device = DeviceMonitor::new(engine.device().clone());
            state.set_engine(engine.clone(), Some(device));
            ServeError::EngineFailed(crate::routes::ready::engine_failure(&engine).await.code())
        }
        Ok(Err(e)) => ServeError::Load(e.to_string()),
        Err(_) => ServeError::Load("the loader thread ended without a result".to_string()),
    }
}

/// Asks the model thread to stop (off the async runtime: the command queue may block).
async fn stop_engine(state: &AppState) {
    if let Some(engine) = state.loaded_engine().cloned() {
        let _ = tokio::task::spawn_blocking(move || EngineHandle::shutdown(&engine)).await;
    }
}
