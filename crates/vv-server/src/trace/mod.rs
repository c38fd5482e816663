//! Request ids and per-utterance timelines: the `X-Request-Id` of every HTTP request (and the
//! `request` span its logs run in), the `utterance` span with its stage events (admitted, first
//! window, first frame, first byte, last byte) and the optional OTLP/HTTP export of those spans.

mod body;
mod middleware;
pub mod otlp;
mod request_id;
mod timeline;

pub use middleware::request_id_layer;
pub use request_id::{Carry, RequestId, HEADER, MAX_LEN};
pub use timeline::{Stage, Timeline};

/// Target of the `request` span (method, path, request id) every HTTP request runs in.
pub const REQUEST_TARGET: &str = "vibevoice::request";
/// Target of the `utterance` spans and their stage events (at DEBUG).
pub const UTTERANCE_TARGET: &str = "vibevoice::utterance";
/// Name of the per-utterance span.
pub const UTTERANCE_SPAN: &str = "utterance";
