//! Logging to stderr with `tracing`, filtered by `RUST_LOG`, in the configured format; and,
//! when `otlp_endpoint` is set, the export of the utterance spans (whatever the filter).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use vv_server::config::LogFormat;

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset or
/// invalid. `otlp_endpoint` turns the span export on.
pub fn init(format: LogFormat, default_filter: &str, otlp_endpoint: Option<&str>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    let installed = registry
        .with(vv_server::trace::otlp::layer(otlp_endpoint))
        .try_init();
    if let Err(error) = installed {
        eprintln!("warning: logging not configured: {error}");
    }
}
