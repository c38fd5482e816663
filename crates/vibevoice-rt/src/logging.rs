//! Logging to stderr with `tracing`, filtered by `RUST_LOG`, in the configured format.

use tracing_subscriber::EnvFilter;
use vv_server::config::LogFormat;

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset or
/// invalid.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(error) = installed {
        eprintln!("warning: logging not configured: {error}");
    }
}
