//! [`GrpcClassifier`]: gRPC's status codes, in the headers of a trailers-only
//! answer or in the trailers at the end of the body.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{
    ClassifyOutcome, Outcome, Settle, classify_error, classify_response, error_is_unprocessed,
    response_is_unprocessed,
};

const OK: i32 = 0;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// The codes that count against the circuit breaker: the service failed.
const BREAKER_FAILURES: u32 =
    bit(UNKNOWN) | bit(DEADLINE_EXCEEDED) | bit(INTERNAL) | bit(UNAVAILABLE);

const fn bit(code: i32) -> u32 {
    1 << code
}

/// Classifies gRPC answers by their `grpc-status`, after gRPC's own retry
/// design (gRFC A6).
///
/// | `grpc-status` | retried? | for the breaker |
/// | --- | --- | --- |
/// | 0 `OK` | no | success |
/// | 14 `UNAVAILABLE` (the default retryable set) | yes, after `grpc-retry-pushback-ms` if given; never when that is negative | failure |
/// | 8 `RESOURCE_EXHAUSTED` | only after a `grpc-retry-pushback-ms` of 0 or more | neutral |
/// | 2 `UNKNOWN`, 4 `DEADLINE_EXCEEDED`, 13 `INTERNAL` | no (unless made retryable) | failure |
/// | any other | no (unless made retryable) | success: the service answered |
/// | none in the headers | no: the answer's headers have come, so the call is committed | when the trailers come ([`Outcome::Deferred`]) |
/// | an HTTP status other than 200 | as [`HttpClassifier`](super::HttpClassifier) | as `HttpClassifier` |
/// | transport error, timeout, open circuit | as [`HttpClassifier`](super::HttpClassifier) | as `HttpClassifier` |
///
/// `grpc-status` is read from the response headers (a trailers-only answer:
/// what a server sends when it fails a call before any message) and, through
/// the circuit breaker, from the trailers at the end of the body: the breaker
/// records the call when they arrive. A body dropped before its end records
/// nothing and gives back any half-open test slot. The body must be one that
/// can carry that record ([`TrailerBody`]: tonic's, `BoxBody`, `UnsyncBoxBody`).
///
/// gRPC calls are POSTs, which the retry layer replays only when the answer
/// proves the call was not acted on: a trailers-only answer with a retryable
/// code (or a `RESOURCE_EXHAUSTED` with a pushback) is such proof, as in
/// gRPC's design; so is a connection that was never made.
///
/// ```
/// use stache_resilience::classify::{ClassifyOutcome, GrpcClassifier, Outcome};
///
/// let unavailable = http::Response::builder()
///     .header("content-type", "application/grpc")
///     .header("grpc-status", "14")
///     .body(http_body_util::combinators::BoxBody::<bytes::Bytes, std::io::Error>::default())
///     .unwrap();
/// let outcome = ClassifyOutcome::<_, std::io::Error>::classify(&GrpcClassifier::default(), Ok(&unavailable));
/// assert!(outcome.is_retryable());
/// assert!(outcome.is_breaker_failure());
///
/// // ABORTED (10) retried too, neutral for the breaker.
/// let classifier = GrpcClassifier::default().retryable_codes([14, 10]);
/// assert!(classifier.classify_code(10, &http::HeaderMap::new()).is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    /// One bit per retryable code (0 to 16).
    retryable: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        GrpcClassifier {
            retryable: bit(UNAVAILABLE),
        }
    }
}

impl GrpcClassifier {
    /// Replaces the codes retried (default: 14 `UNAVAILABLE`); codes outside
    /// gRPC's 0 to 16 are ignored. `RESOURCE_EXHAUSTED` is retried after a
    /// pushback whether or not it is in the set, and, when it is, also without.
    pub fn retryable_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.retryable = codes
            .into_iter()
            .filter(|code| (0..=16).contains(code))
            .fold(0, |set, code| set | bit(code));
        self
    }

    /// What a `grpc-status` of `code` means, with the `grpc-retry-pushback-ms`
    /// found in `metadata` (the headers of a trailers-only answer, or the
    /// trailers).
    pub fn classify_code(&self, code: i32, metadata: &HeaderMap) -> Outcome {
        if code == OK {
            return Outcome::Success;
        }
        let known = (0..=16).contains(&code);
        let is = |set: u32| known && set & bit(code) != 0;
        let failure = !known || is(BREAKER_FAILURES);
        let pushback = pushback(metadata);
        let retryable = is(self.retryable) || (code == RESOURCE_EXHAUSTED && pushback.is_some());
        match pushback {
            Some(Some(wait)) if retryable => wait_outcome(failure, Some(wait)),
            // A negative pushback: the server says not to try again.
            Some(None) => final_outcome(failure, code),
            None if retryable => wait_outcome(failure, None),
            _ => final_outcome(failure, code),
        }
    }

    fn code(headers: &HeaderMap) -> Option<i32> {
        grpc_status(headers)
    }
}

/// A retried outcome: a failure for the breaker, or neutral.
fn wait_outcome(failure: bool, retry_after: Option<Duration>) -> Outcome {
    if failure {
        Outcome::Failure { retry_after }
    } else {
        Outcome::Throttled { retry_after }
    }
}

/// An outcome not retried.
fn final_outcome(failure: bool, code: i32) -> Outcome {
    if failure {
        Outcome::Fatal
    } else if code == RESOURCE_EXHAUSTED {
        Outcome::Ignored
    } else {
        Outcome::ClientError
    }
}

/// `grpc-status`, if present; one that is not a number reads as `UNKNOWN`.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    let value = headers.get("grpc-status")?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(UNKNOWN),
    )
}

/// `grpc-retry-pushback-ms`: `None` when absent, `Some(None)` when negative or
/// not a number (gRPC's "do not retry"), else the wait.
fn pushback(headers: &HeaderMap) -> Option<Option<Duration>> {
    let value = headers.get("grpc-retry-pushback-ms")?;
    let ms = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok());
    Some(match ms {
        Some(ms) if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
        _ => None,
    })
}

/// gRPC's name for a code, for log lines.
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

impl<B: TrailerBody, E: 'static> ClassifyOutcome<http::Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) if response.status() != StatusCode::OK => {
                classify_response(response.status(), response.headers())
            }
            Ok(response) => match Self::code(response.headers()) {
                Some(code) => self.classify_code(code, response.headers()),
                None => Outcome::Deferred,
            },
            Err(error) => classify_error(error),
        }
    }

    fn describe(&self, response: &http::Response<B>) -> Cow<'static, str> {
        match Self::code(response.headers()) {
            Some(code) if response.status() == StatusCode::OK => {
                Cow::Owned(format!("grpc-status {code} {}", code_name(code)))
            }
            _ => Cow::Owned(response.status().to_string()),
        }
    }

    fn is_unprocessed(&self, result: Result<&http::Response<B>, &E>) -> bool {
        match result {
            Ok(response) if response.status() != StatusCode::OK => {
                response_is_unprocessed(response.status(), response.headers())
            }
            Ok(response) => Self::code(response.headers())
                .is_some_and(|code| self.classify_code(code, response.headers()).is_retryable()),
            Err(error) => error_is_unprocessed(error),
        }
    }

    fn defer(&self, response: &mut http::Response<B>, settle: Settle) -> Option<Settle> {
        response.body_mut().settle_at_end(*self, settle)
    }
}

/// Response bodies that can carry the circuit breaker's record of a gRPC call
/// to their end, where the trailers give its status.
///
/// Implemented for the boxed bodies (`BoxBody<Bytes, E>`, `UnsyncBoxBody<Bytes,
/// E>`, and `tonic::body::Body` with the `tonic` feature), which wrap
/// themselves; and for `hyper::body::Incoming` and the buffered bodies, which
/// cannot and give the record back (map such a body into a `BoxBody` below the
/// breaker to have trailers counted).
pub trait TrailerBody {
    /// Takes `settle`, to call at this body's end with what its trailers say
    /// under `classifier`; gives it back if this body cannot carry it.
    fn settle_at_end(&mut self, classifier: GrpcClassifier, settle: Settle) -> Option<Settle>;
}

impl<E: 'static> TrailerBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn settle_at_end(&mut self, classifier: GrpcClassifier, settle: Settle) -> Option<Settle> {
        let inner = std::mem::take(self);
        *self = Self::new(GrpcResponseBody::new(inner, classifier, settle));
        None
    }
}

impl<E: 'static> TrailerBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn settle_at_end(&mut self, classifier: GrpcClassifier, settle: Settle) -> Option<Settle> {
        let inner = std::mem::take(self);
        *self = Self::new(GrpcResponseBody::new(inner, classifier, settle));
        None
    }
}

macro_rules! cannot_carry {
    ($($ty:ty),* $(,)?) => {$(
        impl TrailerBody for $ty {
            /// Gives the record back: this body cannot be wrapped.
            fn settle_at_end(&mut self, _: GrpcClassifier, settle: Settle) -> Option<Settle> {
                Some(settle)
            }
        }
    )*};
}

cannot_carry!(
    hyper::body::Incoming,
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
    String,
    (),
);

pin_project! {
    /// A gRPC response body that records the call's outcome at its end.
    pub(crate) struct GrpcResponseBody<B> {
        #[pin]
        inner: B,
        classifier: GrpcClassifier,
        settle: Option<Settle>,
    }
}

impl<B> GrpcResponseBody<B> {
    pub(crate) fn new(inner: B, classifier: GrpcClassifier, settle: Settle) -> Self {
        GrpcResponseBody {
            inner,
            classifier,
            settle: Some(settle),
        }
    }
}

impl<B: Body> Body for GrpcResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let outcome = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                // A trailer with no status is a broken answer: UNKNOWN.
                Some(trailers) => this
                    .classifier
                    .classify_code(grpc_status(trailers).unwrap_or(UNKNOWN), trailers),
                None => return polled,
            },
            // The stream broke: the service failed the call.
            Poll::Ready(Some(Err(_))) => Outcome::Failure { retry_after: None },
            // Ended with no trailers: no status, so UNKNOWN.
            Poll::Ready(None) => this.classifier.classify_code(UNKNOWN, &HeaderMap::new()),
        };
        if let Some(settle) = this.settle.take() {
            settle.settle(outcome);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
