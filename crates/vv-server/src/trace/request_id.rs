//! The request id: the client's `X-Request-Id` when it is 1 to [`MAX_LEN`] visible ASCII
//! characters, else 32 random hex digits. Within a request it is the task's current id, so
//! error envelopes and utterance spans find it without it being passed along; [`Carry`] takes
//! it (and the request span) into tasks spawned for the request, such as WebSocket sessions.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use futures::future::Either;
use tracing::{Instrument, Span};

/// The header that carries the id, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest id taken from a client, in bytes.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A request id (cheap to clone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh id: 128 random bits as 32 lowercase hex digits.
    pub fn generate() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()).into())
    }

    /// The client's id when valid (1 to [`MAX_LEN`] bytes of visible ASCII, 0x21-0x7E).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        valid.then(|| Self(String::from_utf8_lossy(raw).into()))
    }

    /// The client's id when valid, else a fresh one.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|v| Self::parse(v.as_bytes()))
            .unwrap_or_else(Self::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value (always valid: visible ASCII).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    /// The id of the request the current task serves, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with `self` as the current id.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }

    /// Runs `f` with `self` as the current id (for one poll of a body).
    pub(super) fn sync_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The current request id and span, to run a task spawned for the request in them.
pub struct Carry {
    id: Option<RequestId>,
    span: Span,
}

impl Carry {
    /// Captures the current request id and span.
    pub fn current() -> Self {
        Self {
            id: RequestId::current(),
            span: Span::current(),
        }
    }

    /// `fut` run in the captured span, with the captured id current.
    pub fn wrap<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        let fut = fut.instrument(self.span);
        match self.id {
            Some(id) => Either::Left(id.scope(fut)),
            None => Either::Right(fut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_validated() {
        assert_eq!(
            RequestId::parse(b"abc-123_X.y").unwrap().as_str(),
            "abc-123_X.y"
        );
        assert_eq!(
            RequestId::parse(&[b'a'; MAX_LEN]).unwrap().as_str().len(),
            MAX_LEN
        );
        for bad in [
            &b""[..],
            &[b'a'; MAX_LEN + 1],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
        let bad = HeaderValue::from_static("has space");
        let generated = RequestId::from_header(Some(&bad));
        assert_eq!(generated.as_str().len(), 32);
        assert!(generated.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(RequestId::generate(), RequestId::generate());
    }

    #[tokio::test]
    async fn the_id_is_current_inside_its_scope_and_carried() {
        assert_eq!(RequestId::current(), None);
        let id = RequestId::parse(b"r-1").unwrap();
        let carried = id
            .clone()
            .scope(async {
                let carry = Carry::current();
                tokio::spawn(carry.wrap(async { RequestId::current() }))
                    .await
                    .unwrap()
            })
            .await;
        assert_eq!(carried, Some(id));
    }
}
