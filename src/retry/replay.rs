//! What the retry layer can send again, and what it may.

use bytes::Bytes;
use http::Method;
use tokio::time::Instant;

use crate::deadline::RequestDeadline;

/// Which failed requests a [`RetryLayer`](super::RetryLayer) may send again.
///
/// | request | retried after |
/// | --- | --- |
/// | idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE, or marked [`Idempotent(true)`](Idempotent)) | any retryable outcome |
/// | not idempotent (POST, PATCH, others), under `Replay::Idempotent` | only an outcome that proves the server did not act on it: no connection was made, no local slot was free, a 429, `x-should-retry: true` ([`ClassifyOutcome::is_unprocessed`](crate::classify::ClassifyOutcome::is_unprocessed)) |
/// | anything, under `Replay::Always` | any retryable outcome |
///
/// Never retried, whatever the policy: a timeout, reset or close after the
/// request was written, a 5xx, or a broken body, for a request that is not
/// idempotent — the server may have run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Replay {
    /// Replays an idempotent request after any retryable outcome, and any other
    /// only when the server provably did not act on it. The default.
    #[default]
    Idempotent,
    /// Replays every request after any retryable outcome, as the original design
    /// does: for APIs whose writes are safe to repeat.
    Always,
}

/// Marks a request as safe to repeat (`Idempotent(true)`), or not
/// (`Idempotent(false)`), whatever its method; put it in the request's
/// extensions.
///
/// ```
/// use stache_resilience::retry::{Idempotent, ReplayRequest};
///
/// let mut embed = http::Request::post("/v1/embeddings").body(String::new()).unwrap();
/// assert!(!embed.is_idempotent());
/// embed.extensions_mut().insert(Idempotent(true));
/// assert!(embed.is_idempotent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotent(pub bool);

/// Whether a method is idempotent by RFC 9110 (section 9.2.2): GET, HEAD, OPTIONS, PUT,
/// DELETE, TRACE.
pub fn method_is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Requests that the retry layer can send again.
///
/// Implemented for `http::Request<B>` when the body can be copied cheaply
/// ([`ReplayBody`]). A request whose `try_clone` gives `None` is sent once and
/// never retried.
pub trait ReplayRequest: Sized {
    /// A copy to send on the next attempt, or `None` if the request cannot be
    /// replayed.
    fn try_clone(&self) -> Option<Self>;

    /// Whether the request is safe to repeat even if the server acted on it
    /// (see [`Replay`]). The default is `true`: a request type that is not HTTP
    /// says so by implementing this trait at all.
    fn is_idempotent(&self) -> bool {
        true
    }

    /// The call's deadline, if it has one.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Gives the call a deadline; ignored by request types that cannot carry one.
    fn set_deadline(&mut self, deadline: Instant) {
        let _ = deadline;
    }
}

/// Request bodies that can be sent again.
///
/// Buffered bodies (`Full<Bytes>`, `Empty<Bytes>`, `Bytes`, `String`, `Vec<u8>`,
/// `()`) return a copy; streaming bodies (`hyper::body::Incoming`, boxed bodies)
/// return `None`.
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` if it cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;

    /// Whether the request this body belongs to, sent with `method`, is safe to
    /// repeat, when the body knows better than the method alone (a client that
    /// marks its own calls). `None`, the default, leaves it to the method.
    /// Asked only when a retry is being considered.
    fn idempotency(&self, method: &Method) -> Option<bool> {
        let _ = method;
        None
    }
}

macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {$(
        impl ReplayBody for $ty {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!(
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
    Bytes,
    String,
    Vec<u8>,
    &'static str,
    (),
);

impl ReplayBody for hyper::body::Incoming {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<B: ReplayBody> ReplayRequest for http::Request<B> {
    fn try_clone(&self) -> Option<Self> {
        let body = self.body().try_clone_body()?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Some(copy)
    }

    /// An [`Idempotent`] extension, else the body's
    /// [`idempotency`](ReplayBody::idempotency), else the method.
    fn is_idempotent(&self) -> bool {
        if let Some(Idempotent(flag)) = self.extensions().get::<Idempotent>() {
            return *flag;
        }
        self.body()
            .idempotency(self.method())
            .unwrap_or_else(|| method_is_idempotent(self.method()))
    }

    fn deadline(&self) -> Option<Instant> {
        self.extensions().get::<RequestDeadline>().map(|d| d.0)
    }

    fn set_deadline(&mut self, deadline: Instant) {
        self.extensions_mut().insert(RequestDeadline(deadline));
    }
}
