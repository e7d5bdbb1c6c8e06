//! What the retry layer can send again, and what it may.

use std::sync::Arc;

use bytes::Bytes;
use http::{Extensions, Method};
use http_body::Body;
use tokio::time::Instant;

use super::tee::TeeBody;
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

/// The request header that marks a request as safe to repeat (`true`) or not
/// (`false`), whatever its method: the same word as [`Idempotent`], for a
/// request whose extensions cannot be reached (reqwest 0.13 keeps
/// `Request::extensions_mut` private) or is easier to mark by header.
///
/// [`RetryLayer`](super::RetryLayer) reads it and removes it before the first
/// attempt, so the server never sees it; [`HttpClient`](crate::HttpClient)
/// reads it as [`RequestBuilder::idempotent`](crate::client::RequestBuilder::idempotent).
/// A value other than `true` or `false` is removed and ignored, with a WARN.
///
/// ```
/// use stache_resilience::retry::{ReplayRequest, SAFE_TO_REPEAT};
///
/// let mut embed = http::Request::post("/v1/embeddings")
///     .header(SAFE_TO_REPEAT, "true")
///     .body(String::new())
///     .unwrap();
/// assert_eq!(embed.take_repeat_mark(), None, "kept in the extensions instead");
/// assert!(embed.headers().get(SAFE_TO_REPEAT).is_none());
/// assert!(embed.is_idempotent());
/// ```
pub const SAFE_TO_REPEAT: http::HeaderName =
    http::HeaderName::from_static("x-stache-safe-to-repeat");

/// Removes [`SAFE_TO_REPEAT`] from `headers`, and gives its word.
pub(crate) fn take_mark(headers: &mut http::HeaderMap) -> Option<bool> {
    if headers.is_empty() {
        return None;
    }
    let value = headers.remove(SAFE_TO_REPEAT)?;
    let word = value.to_str().ok().map(str::trim);
    match word {
        Some(w) if w.eq_ignore_ascii_case("true") => Some(true),
        Some(w) if w.eq_ignore_ascii_case("false") => Some(false),
        _ => {
            tracing::warn!("{SAFE_TO_REPEAT} must be `true` or `false`; got {value:?}, ignored");
            None
        }
    }
}

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
/// Implemented for `http::Request<B>` for every body the crate knows
/// ([`ReplayBody`]), and for `reqwest::Request` (feature `reqwest`). A request
/// whose `try_clone` gives `None` is sent once and never retried.
///
/// `http::Request<Incoming>` and `http::Request<StreamBody<S>>` are taken too:
/// the retry layer sends them as `http::Request<TeeBody<_>>`, so the service
/// below it takes that type (a hyper-util client infers it).
pub trait ReplayRequest: Sized {
    /// Readies the request for its first attempt: a boxed body is boxed again
    /// over a [`TeeBody`] that keeps it as it is sent, at most
    /// `max_replay_bytes` of it. The default changes nothing.
    fn prepare(&mut self, max_replay_bytes: usize) {
        let _ = max_replay_bytes;
    }

    /// A copy to send on the next attempt, or `None` if the request cannot be
    /// replayed.
    fn try_clone(&self) -> Option<Self>;

    /// Whether the request is safe to repeat even if the server acted on it
    /// (see [`Replay`]). The default is `true`: a request type that is not HTTP
    /// says so by implementing this trait at all.
    fn is_idempotent(&self) -> bool {
        true
    }

    /// Removes the [`SAFE_TO_REPEAT`] mark from the request before it is sent,
    /// and gives its word, unless the request keeps the word itself (an
    /// `http::Request` keeps it as an [`Idempotent`] extension, and gives
    /// `None`). Called once, before the first attempt. The default does
    /// nothing.
    fn take_repeat_mark(&mut self) -> Option<bool> {
        None
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

/// Request bodies that the retry layer can send again.
///
/// | body | sent as | kept for a retry |
/// | --- | --- | --- |
/// | `Full<Bytes>`, `Empty<Bytes>`, `Bytes`, `String`, `Vec<u8>`, `&'static str`, `()` | itself | a copy (reference counts) |
/// | `hyper::body::Incoming`, `StreamBody<S>` (no `ReplayBody` impl: the retry layer takes their requests itself) | [`TeeBody`] over it | what it sent, up to `max_replay_bytes` |
/// | `BoxBody<Bytes, E>`, `UnsyncBoxBody<Bytes, E>`, `tonic::body::Body` (feature `tonic`) | itself, boxing a [`TeeBody`] | what it sent, up to `max_replay_bytes` |
/// | [`TeeBody<B>`] (wrap any other body in it) | itself | what it sent, up to its own cap |
///
/// For a body type of your own that is copied cheaply, return a clone from
/// `try_clone_body`.
pub trait ReplayBody: Sized {
    /// Readies a request with this body for its first attempt. A boxed body
    /// boxes itself again over a [`TeeBody`] keeping at most
    /// `max_replay_bytes`, and leaves in the request's extensions what
    /// [`try_clone_in`](Self::try_clone_in) needs to box a copy. The default
    /// changes nothing.
    fn prepare(request: &mut http::Request<Self>, max_replay_bytes: usize) {
        let _ = (request, max_replay_bytes);
    }

    /// A copy of the body, or `None` if it cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;

    /// A copy of the body of a request with these `extensions`: what
    /// [`try_clone_body`](Self::try_clone_body) gives, unless the body was boxed
    /// over a [`TeeBody`] by [`prepare`](Self::prepare).
    fn try_clone_in(&self, extensions: &Extensions) -> Option<Self> {
        let _ = extensions;
        self.try_clone_body()
    }

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

impl<B: Body> ReplayBody for TeeBody<B> {
    fn try_clone_body(&self) -> Option<Self> {
        self.try_clone()
    }
}

/// Left in a request's extensions by a boxed body's `prepare`: boxes a copy
/// of the [`TeeBody`] inside.
pub(crate) struct Rebox<T> {
    copy: Arc<dyn Fn() -> Option<T> + Send + Sync>,
}

impl<T> Clone for Rebox<T> {
    fn clone(&self) -> Self {
        Rebox {
            copy: self.copy.clone(),
        }
    }
}

impl<T: 'static> Rebox<T> {
    /// Boxes the body of `request` as `wrap(TeeBody(body))`, and leaves in its
    /// extensions how to box a copy.
    pub(crate) fn tee(
        request: &mut http::Request<T>,
        max_replay_bytes: usize,
        wrap: fn(TeeBody<T>) -> T,
    ) where
        T: Body + Default + Send + 'static,
    {
        let tee = TeeBody::new(std::mem::take(request.body_mut()), max_replay_bytes);
        let source = tee.handle();
        request.extensions_mut().insert(Rebox::<T> {
            copy: Arc::new(move || source.try_clone().map(wrap)),
        });
        *request.body_mut() = wrap(tee);
    }

    /// A boxed copy, if `extensions` came with a boxed [`TeeBody`].
    pub(crate) fn copy(extensions: &Extensions) -> Option<T> {
        (extensions.get::<Rebox<T>>()?.copy)()
    }
}

impl<E: 'static> ReplayBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn prepare(request: &mut http::Request<Self>, max_replay_bytes: usize) {
        Rebox::tee(request, max_replay_bytes, Self::new);
    }

    /// Never: a boxed body is copied through the request's extensions
    /// ([`try_clone_in`](Self::try_clone_in)).
    fn try_clone_body(&self) -> Option<Self> {
        None
    }

    fn try_clone_in(&self, extensions: &Extensions) -> Option<Self> {
        Rebox::copy(extensions)
    }
}

impl<E: 'static> ReplayBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn prepare(request: &mut http::Request<Self>, max_replay_bytes: usize) {
        Rebox::tee(request, max_replay_bytes, Self::new);
    }

    /// Never: a boxed body is copied through the request's extensions
    /// ([`try_clone_in`](Self::try_clone_in)).
    fn try_clone_body(&self) -> Option<Self> {
        None
    }

    fn try_clone_in(&self, extensions: &Extensions) -> Option<Self> {
        Rebox::copy(extensions)
    }
}

impl<B: ReplayBody> ReplayRequest for http::Request<B> {
    fn prepare(&mut self, max_replay_bytes: usize) {
        B::prepare(self, max_replay_bytes);
    }

    fn try_clone(&self) -> Option<Self> {
        let body = self.body().try_clone_in(self.extensions())?;
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

    /// Keeps the mark's word as an [`Idempotent`] extension, where
    /// [`is_idempotent`](ReplayRequest::is_idempotent) and the layers below
    /// find it.
    fn take_repeat_mark(&mut self) -> Option<bool> {
        if let Some(flag) = take_mark(self.headers_mut()) {
            self.extensions_mut().insert(Idempotent(flag));
        }
        None
    }

    fn deadline(&self) -> Option<Instant> {
        self.extensions().get::<RequestDeadline>().map(|d| d.0)
    }

    fn set_deadline(&mut self, deadline: Instant) {
        self.extensions_mut().insert(RequestDeadline(deadline));
    }
}
