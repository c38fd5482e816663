//! The HTTP routes: probes, information, the OpenAI speech API, the official demo's protocol
//! and the Prometheus scrape.

pub mod demo;
pub mod health;
pub mod info;
pub mod metrics;
pub mod models;
pub mod ready;
pub mod speech;
pub mod voices;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

use axum::Router;

use crate::state::AppState;

/// Every HTTP route of this module, unlayered.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(ready::router())
        .merge(info::router())
        .merge(voices::router())
        .merge(models::router())
        .merge(speech::router())
        .merge(demo::router())
        .merge(metrics::router())
}
