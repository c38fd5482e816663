//! Cartesia's WebSocket dialect at `GET /tts/websocket`, as Pipecat's `CartesiaTTSService`
//! and LiveKit's Cartesia plugin speak it (see docs/integrations.md).
//!
//! - [`inbound`]: Cartesia requests -> protocol v1 messages.
//! - [`outbound`]: protocol v1 events and audio frames -> Cartesia messages.
//! - [`handler`]: the upgrade.
//! - [`bytes`]: `POST /tts/bytes`, translated into `POST /v1/audio/speech`.
//!
//! Choices: a request's `voice`, `output_format` and `add_timestamps` apply when its context
//! is created (Cartesia fixes them per context); `continue: false` ends the context (its
//! transcript, if any, is synthesised first) and `done` follows its last chunk; `flush: true`
//! answers `flush_done` with a per-context `flush_id` once the audio so far is out; `cancel`
//! stops the context and answers nothing. `model_id`, `language`, `max_buffer_delay_ms` and
//! `use_original_timestamps` are accepted and ignored; `generation_config.speed` is the core's
//! `speed` (0.25-4.0, pitch-preserving time-stretch; `"normal"` is 1.0, other words are
//! refused with `invalid_value`).

pub mod bytes;
pub mod handler;
pub mod inbound;
pub mod outbound;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// Path of the Cartesia-compatible WebSocket.
pub const PATH: &str = "/tts/websocket";

/// Path of the Cartesia-compatible HTTP synthesis.
pub const BYTES_PATH: &str = "/tts/bytes";

/// The Cartesia routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(handler::websocket))
        .route(BYTES_PATH, post(bytes::bytes))
}
