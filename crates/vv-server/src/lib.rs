//! vv-server: the HTTP/WebSocket service and its configuration.

pub mod app;
pub mod auth;
pub mod config;
pub mod conn;
pub mod dialects;
pub mod engine_options;
pub mod error;
#[doc(hidden)]
pub mod fuzz_entry;
#[cfg(test)]
mod fuzz_strategies;
pub mod log_limit;
pub mod memory_release;
pub mod metrics;
pub mod origin;
pub mod page;
pub mod routes;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod trace;
pub mod upgrade;
pub mod voice_alias;
pub mod ws;

pub use app::app;
pub use error::ApiError;
pub use serve::{serve, serve_with_shutdown, ServeError, Server};
pub use state::AppState;
