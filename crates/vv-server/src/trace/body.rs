//! A response body polled inside its request's span and with its request id current, so the
//! work a streaming body does (synthesis, late errors) is logged and traced under the request.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tracing::Span;

use super::request_id::RequestId;

/// `inner`, polled in `span` with `id` current.
pub(super) struct ScopedBody {
    pub(super) inner: Body,
    pub(super) id: RequestId,
    pub(super) span: Span,
}

impl http_body::Body for ScopedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        let inner = &mut this.inner;
        this.id.sync_scope(|| Pin::new(inner).poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
