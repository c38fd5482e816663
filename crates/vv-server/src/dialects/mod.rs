//! Other vendors' wire dialects, each a thin codec over the one session core of [`crate::ws`]:
//! a codec translates the vendor's client messages into protocol v1 messages and the core's
//! events into the vendor's; contexts, flushes, cancels, limits and timestamps stay the core's.
//!
//! - [`codec`]: the upgrade, request parsing and core-event reading every dialect shares.
//! - [`cartesia`]: Cartesia's `GET /tts/websocket` and `POST /tts/bytes`.
//! - [`elevenlabs`]: ElevenLabs' `multi-stream-input` / `stream-input` WebSockets and
//!   `POST /v1/text-to-speech/{voice_id}` (and `/stream`).

pub mod cartesia;
pub mod codec;
pub mod elevenlabs;

use axum::Router;

use crate::state::AppState;

/// The routes of every dialect.
pub fn router() -> Router<AppState> {
    cartesia::router().merge(elevenlabs::router())
}
