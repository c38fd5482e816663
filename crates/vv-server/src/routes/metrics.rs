//! `GET /metrics`: the Prometheus text exposition, with slot and device gauges refreshed at
//! scrape time.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::error;

use crate::error::ApiError;
use crate::metrics::CONTENT_TYPE;
use crate::state::AppState;

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>) -> Response {
    state.refresh_gauges();
    match state.metrics().render() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            error!("rendering metrics failed: {e}");
            ApiError::Internal.into_response()
        }
    }
}
