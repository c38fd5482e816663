//! Optional export of the utterance spans as OTLP/HTTP JSON (`otlp_endpoint`, off by
//! default): a tracing layer collects each `utterance` span (times, attributes, stage events)
//! into a bounded queue, dropping and counting spans when it is full, and a background thread
//! POSTs them in batches to `<endpoint>/v1/traces`. Synthesis never waits for the export;
//! failures are logged at most once per [`FAILURE_LOG_INTERVAL`].

mod encode;
mod endpoint;
mod export;
mod layer;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tracing::{Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub use endpoint::Endpoint;
pub use layer::OtlpLayer;

use super::UTTERANCE_TARGET;

/// Finished spans waiting for export at most; more are dropped (and counted).
pub const QUEUE: usize = 2048;
/// Spans per POST at most.
pub const MAX_BATCH: usize = 512;
/// Longest wait for one POST (connect, send, response).
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one WARN line per this interval for failed posts and dropped spans.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The export layer for `endpoint` (`None`: export off), its exporter thread started. It sees
/// the utterance spans and their stage events whatever the log filter. An endpoint that does
/// not parse (settings validate it first) or a thread that cannot start is logged and leaves
/// the export off.
pub fn layer<S>(endpoint: Option<&str>) -> Option<impl Layer<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let endpoint = match Endpoint::parse(endpoint?) {
        Ok(endpoint) => endpoint,
        Err(problem) => {
            tracing::error!("OTLP export off: {problem}");
            return None;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    if let Err(error) = export::spawn(endpoint.clone(), rx, Arc::clone(&dropped)) {
        tracing::error!(%error, "OTLP export off: its thread did not start");
        return None;
    }
    tracing::info!(endpoint = %endpoint, "exporting utterance spans (OTLP/HTTP JSON)");
    let filter = Targets::new().with_target(UTTERANCE_TARGET, Level::DEBUG);
    Some(OtlpLayer::new(tx, dropped).with_filter(filter))
}
