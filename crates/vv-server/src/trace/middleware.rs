//! The outermost layer: takes or makes the request id, runs the request in a `request` span
//! with the id current (error envelopes and utterance spans read it), echoes it in the
//! `X-Request-Id` response header of every response (upgrades included) and keeps both for
//! the polls of the response body.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::{info_span, Instrument};

use super::body::ScopedBody;
use super::request_id::{RequestId, HEADER};
use super::REQUEST_TARGET;

/// The middleware (`axum::middleware::from_fn(request_id_layer)`).
pub async fn request_id_layer(mut request: Request, next: Next) -> Response {
    let id = RequestId::from_header(request.headers().get(HEADER));
    // The path only: the query may carry an API key.
    let span = info_span!(
        target: REQUEST_TARGET,
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    request.extensions_mut().insert(id.clone());
    let response = id
        .clone()
        .scope(next.run(request).instrument(span.clone()))
        .await;
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(HEADER, id.header_value());
    let body = Body::new(ScopedBody {
        inner: body,
        id,
        span,
    });
    Response::from_parts(parts, body)
}
