//! The streaming WebSocket protocol v1 (`GET /v1/tts/stream`, see protocol.md): several
//! contexts per connection, text in any chunking, flush / close / cancel, binary audio frames
//! with a 16-byte header, idle timeouts and close codes.
//!
//! - [`transport`]: the session's `Incoming` / `Outgoing` enums and the axum adapter.
//! - [`messages`] / [`events`]: client messages (parsing) and server events (JSON).
//! - [`session_config`]: voice, encoding, rate and synthesis defaults, `session.configure`.
//! - [`framing`]: binary audio frames of a context.
//! - [`context`]: one context and its segments (one engine utterance per segment).
//! - [`backlog`]: a context's held-back operations; [`slot_share`]: a session's slot share.
//! - [`timestamps`]: estimated word timestamps of a context.
//! - [`session`]: the state machine, generic over `Sink` / `Stream`.
//! - [`handler`]: the HTTP upgrade.
//!
//! Documented choices where protocol.md is silent:
//! - A `text` with an empty `text` is a flush when `flush` is true and the context exists;
//!   otherwise it gets the non-fatal error `empty_text`. Whitespace-only text is text (it
//!   separates words).
//! - Malformed JSON, unknown types, missing fields and unknown contexts are non-fatal errors;
//!   binary messages and transport-level violations are fatal (4400, 1009 or 1007).
//! - A context keeps the encoding, rate, voice and synthesis settings in force when it was
//!   created; `session.configure` applies to contexts created afterwards.
//! - Every segment ends with a frame flagged LAST that carries the encoder's tail (no
//!   samples at 24 kHz); a segment without audio sends no frame.
//! - `cancel` answers `cancelled` at once and sends nothing more for the context.
//! - The session idle timer counts from the last message in either direction; a context
//!   waiting for text with no synthesis progress (no segment started, no audio, no segment
//!   finished) for `context_idle_timeout_secs` is closed (warning `context_idle_timeout`,
//!   then its remaining audio and `context.done`), however much text trickles in meanwhile.
//! - A session has at most `max_contexts_per_session` contexts (`too_many_contexts`) and its
//!   segments hold at most `max_session_slot_percent` of the engine's slots
//!   (`session_slot_share`); both errors are non-fatal.
//! - While a context's first audio is made from text the engine already has, the session
//!   leaves later client messages unread for at most `first_audio_hold_ms` (see
//!   [`session`]): they are handled, in order, once that audio went out.
//! - When the server drains, open contexts are closed (warning `shutting_down`), new ones are
//!   refused, and the session closes with 1001 once the last context is done.

pub mod backlog;
pub mod close_code;
pub mod context;
pub mod error;
pub mod events;
pub mod framing;
pub mod handler;
pub mod messages;
pub mod session;
pub mod session_config;
pub mod slot_share;
pub mod timestamps;
pub mod transport;

use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub use close_code::CloseCode;
pub use error::WsError;
pub use session::run_session;
pub use session_config::SessionConfig;
pub use transport::{Incoming, Outgoing};

/// Path of the streaming endpoint.
pub const PATH: &str = "/v1/tts/stream";

/// The WebSocket route.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(handler::stream))
}
