//! One place that decides what the result of a call means.
//!
//! Every layer reads an attempt's result through a classifier, which turns it into
//! an [`Outcome`]: whether it is retried, and whether it counts against the
//! circuit breaker. The HTTP classifier follows this table:
//!
//! | result | retried? | for the breaker |
//! | --- | --- | --- |
//! | 1xx, 2xx, 3xx | no | success |
//! | 408, 5xx (and made-up codes ≥ 600) | yes (after twice the backoff when the provider says it is overloaded: [`ClassifyOutcome::backoff_scale`]) | failure |
//! | 429 Too Many Requests | yes, after its wait | neutral: alive, but not proof of recovery |
//! | other 4xx | no | success: the caller's mistake |
//! | `x-should-retry: true` on a 4xx | yes, like a 429 | neutral |
//! | `x-should-retry: false` on a 408, 5xx | no ([`Outcome::Fatal`]) | failure |
//! | `x-should-retry: false` on a 429 | no | neutral |
//! | an account's error (a [`ProviderError`](crate::provider::ProviderError) in the answer's extensions whose kind [`is_final_for_provider`](crate::provider::ProviderErrorKind::is_final_for_provider): a spent quota, a refused key) | no | neutral; the rate limiter cools the provider down |
//! | transport error (refused, reset, DNS, TLS) | yes | failure |
//! | attempt timeout ([`Elapsed`](crate::timeout::Elapsed)) | yes, unless the deadline cut it | failure |
//! | pool timeout ([`PoolTimeout`]) | no | neutral: local congestion |
//! | rate limit refused the wait ([`RateLimited`]) | no | neutral: nothing was sent |
//! | [`CircuitOpen`] | never | neutral |
//! | future dropped by the caller | – | neutral, and held slots are freed |
//!
//! The wait is `retry-after-ms` (or `x-ms-retry-after-ms`, in milliseconds) when
//! the answer has one, else `Retry-After` (seconds or a date).
//!
//! "Retried" is for a request that is safe to repeat. One that is not (see
//! [`Replay`](crate::retry::Replay)) is retried only when
//! [`ClassifyOutcome::is_unprocessed`] says the service cannot have acted on it:
//! the connection was never made, or the answer was a 429 or carried
//! `x-should-retry: true`.
//!
//! Replace the classifier to teach the layers about another protocol (gRPC status
//! codes) or an API that signals overload in its body: implement
//! [`ClassifyOutcome`], or pass a closure.
//!
//! # Example
//!
//! ```
//! use stache_resilience::classify::{ClassifyOutcome, HttpClassifier, Outcome};
//!
//! let res = http::Response::builder().status(503).body(()).unwrap();
//! let outcome = ClassifyOutcome::<_, std::io::Error>::classify(&HttpClassifier, Ok(&res));
//! assert!(outcome.is_retryable());
//! assert!(outcome.is_breaker_failure());
//!
//! // A closure works as a classifier too.
//! let only_errors = |r: Result<&u32, &std::io::Error>| match r {
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure { retry_after: None },
//! };
//! assert_eq!(only_errors.classify(Ok(&1)), Outcome::Success);
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use http::StatusCode;

mod grpc;

#[cfg(feature = "tonic")]
pub(crate) use self::grpc::GrpcResponseBody;
pub use self::grpc::{GrpcClassifier, TrailerBody};

use crate::error::{
    BodyError, BodyTooLarge, BoxError, CircuitOpen, Error, ErrorKind, Injected, PoolTimeout,
    RateLimited, chain, cut_by_deadline,
};

pub use crate::retry_after::{headers_retry_after, parse_retry_after};

/// What one call's result means to the retry layer and the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The call worked. Not retried; a success for the breaker.
    Success,
    /// The service answered but refused the call because of the caller (a 4xx other
    /// than 408 and 429). Not retried; the service is alive, so the breaker counts
    /// a success.
    ClientError,
    /// The service is alive but asks the caller to slow down (429, or a 4xx with
    /// `x-should-retry: true`). Retried, no sooner than `retry_after`; neutral for
    /// the breaker (neither a success nor a failure).
    Throttled {
        /// How long the service asked the caller to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The service failed or could not be reached (5xx, 408, transport error,
    /// attempt timeout). Retried; a failure for the breaker.
    Failure {
        /// How long the service asked the caller to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Says nothing about the service (the circuit was open, no local connection
    /// slot was free). Not retried and not counted; a half-open slot is given back.
    Ignored,
    /// The service failed and said not to try again (`x-should-retry: false` on a
    /// 5xx or 408). Not retried; a failure for the breaker.
    Fatal,
    /// The answer's headers do not say yet; its body's end will (a gRPC
    /// answer whose `grpc-status` comes in the trailers). Not retried: the
    /// call is committed. The breaker hands its verdict to the body
    /// ([`ClassifyOutcome::defer`]).
    Deferred,
}

impl Outcome {
    /// Whether the retry layer may try the call again.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Throttled { .. } | Outcome::Failure { .. })
    }

    /// Whether the circuit breaker counts this as a failure.
    pub const fn is_breaker_failure(&self) -> bool {
        matches!(self, Outcome::Failure { .. } | Outcome::Fatal)
    }

    /// The wait the service asked for, if any.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Outcome::Throttled { retry_after } | Outcome::Failure { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The `outcome` label of an attempt in the metrics.
    #[cfg(feature = "metrics")]
    pub(crate) const fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Failure { .. } | Outcome::Fatal => "failure",
            Outcome::Ignored => "ignored",
            Outcome::Deferred => "deferred",
        }
    }
}

/// Turns the result of a call into an [`Outcome`].
///
/// Implemented by [`ErrorsAreFailures`], [`HttpClassifier`], and every
/// `Fn(Result<&Res, &E>) -> Outcome` closure.
pub trait ClassifyOutcome<Res, E> {
    /// Classifies one result.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;

    /// A short description of a response that was classified as unsuccessful, for
    /// log lines such as `attempt 1/4 failed: 503 Service Unavailable`.
    fn describe(&self, response: &Res) -> Cow<'static, str> {
        let _ = response;
        Cow::Borrowed("unsuccessful response")
    }

    /// Whether `result` proves that the service did not act on the request, so
    /// that even a request that is not safe to repeat may be sent again.
    ///
    /// The default: an error whose chain shows the connection was never made
    /// (hyper-util's connect errors), no local slot was free ([`PoolTimeout`]), or
    /// the circuit refused the call ([`CircuitOpen`]). Never a response.
    fn is_unprocessed(&self, result: Result<&Res, &E>) -> bool
    where
        E: 'static,
    {
        match result {
            Ok(_) => false,
            Err(error) => error_is_unprocessed(error),
        }
    }

    /// How many times its usual backoff a retry after `result` waits: 1 (the
    /// default), or more for a service that said it is overloaded, which a
    /// quick retry only burdens more. The wait stays within the retry
    /// config's `max_delay` and the call's deadline.
    fn backoff_scale(&self, result: Result<&Res, &E>) -> u32 {
        let _ = result;
        1
    }

    /// For a response classified [`Outcome::Deferred`]: hands `settle` to the
    /// response's body, which calls it with the outcome its end shows. Gives
    /// `settle` back when the body cannot carry it (the default); the breaker
    /// then records nothing, and gives back a half-open slot.
    fn defer(&self, response: &mut Res, settle: Settle) -> Option<Settle> {
        let _ = response;
        Some(settle)
    }
}

/// The circuit breaker's record of one call whose outcome comes at the end of
/// its response body; see [`ClassifyOutcome::defer`].
///
/// [`settle`](Self::settle) records the outcome. Dropped unsettled (the body
/// was dropped before its end), it records nothing and gives back any
/// half-open test slot the call held.
pub struct Settle {
    record: Option<Box<dyn FnOnce(Outcome) + Send + Sync>>,
}

impl Settle {
    pub(crate) fn new(record: impl FnOnce(Outcome) + Send + Sync + 'static) -> Self {
        Settle {
            record: Some(Box::new(record)),
        }
    }

    /// Records `outcome` for the call.
    pub fn settle(mut self, outcome: Outcome) {
        if let Some(record) = self.record.take() {
            record(outcome);
        }
    }
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settle").finish_non_exhaustive()
    }
}

impl<F, Res, E> ClassifyOutcome<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success, every `Err` a retryable
/// failure — except the errors that say nothing about the service
/// ([`CircuitOpen`], [`PoolTimeout`]), which are
/// [`Outcome::Ignored`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAreFailures;

impl<Res, E: 'static> ClassifyOutcome<Res, E> for ErrorsAreFailures {
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => classify_error(error),
        }
    }
}

/// Classifies HTTP responses by status code and errors as [`ErrorsAreFailures`]
/// does; see the table in the [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier;

impl<B, E: 'static> ClassifyOutcome<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => match classify_response(response.status(), response.headers()) {
                outcome if outcome != Outcome::Success && account_error(response).is_some() => {
                    Outcome::Ignored
                }
                outcome => outcome,
            },
            Err(error) => classify_error(error),
        }
    }

    /// The status, and what the provider's error says by name when an
    /// [`HttpClient`](crate::HttpClient) read one (`529 overloaded
    /// (overloaded_error)`, where the status alone reads `529 <unknown status
    /// code>`); never the provider's message, which a log line need not carry.
    fn describe(&self, response: &http::Response<B>) -> Cow<'static, str> {
        let status = response.status();
        match response
            .extensions()
            .get::<crate::provider::ProviderError>()
        {
            Some(named) => Cow::Owned(match named.code() {
                Some(code) => format!("{} {} ({code})", status.as_u16(), named.kind()),
                None => format!("{} {}", status.as_u16(), named.kind()),
            }),
            None => Cow::Owned(status.to_string()),
        }
    }

    /// Twice the backoff after a 5xx whose body says the provider is
    /// overloaded ([`ProviderErrorKind::Overloaded`](crate::provider::ProviderErrorKind::Overloaded):
    /// Anthropic's 529 `overloaded_error`, Gemini's `UNAVAILABLE`), as an
    /// [`HttpClient`](crate::HttpClient) names it.
    fn backoff_scale(&self, result: Result<&http::Response<B>, &E>) -> u32 {
        match result {
            Ok(response) if response.status().is_server_error() => {
                let kind = response
                    .extensions()
                    .get::<crate::provider::ProviderError>()
                    .map(crate::provider::ProviderError::kind);
                if kind == Some(crate::provider::ProviderErrorKind::Overloaded) {
                    2
                } else {
                    1
                }
            }
            _ => 1,
        }
    }

    /// A 429, an answer with `x-should-retry: true`, and the errors of the
    /// [default](ClassifyOutcome::is_unprocessed).
    fn is_unprocessed(&self, result: Result<&http::Response<B>, &E>) -> bool {
        match result {
            Ok(response) => response_is_unprocessed(response.status(), response.headers()),
            Err(error) => error_is_unprocessed(error),
        }
    }
}

/// The kind of the [`ProviderError`](crate::provider::ProviderError) an
/// answer carries, if it is the account's, not the call's (a spent quota, a
/// refused key).
#[cold]
pub(crate) fn account_error<B>(
    response: &http::Response<B>,
) -> Option<crate::provider::ProviderErrorKind> {
    let kind = response
        .extensions()
        .get::<crate::provider::ProviderError>()?
        .kind();
    kind.is_final_for_provider().then_some(kind)
}

/// The header by which OpenAI's and Anthropic's APIs say whether to retry.
const X_SHOULD_RETRY: &str = "x-should-retry";

/// `x-should-retry` read as a flag; anything but `true`/`false` is ignored.
fn should_retry(headers: &http::HeaderMap) -> Option<bool> {
    let value = headers.get(X_SHOULD_RETRY)?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Whether an answer proves its request was not acted on: a 429, or
/// `x-should-retry: true`.
pub fn response_is_unprocessed(status: StatusCode, headers: &http::HeaderMap) -> bool {
    match should_retry(headers) {
        Some(flag) => flag,
        None => status == StatusCode::TOO_MANY_REQUESTS,
    }
}

/// Whether an error proves its request never reached the service: the
/// connection was never made, no local slot was free, the circuit was open, or
/// an HTTP/2 server refused the stream or announced, going away, that it would
/// not process it. Never an error met while reading the body
/// ([`BodyError`]): the response head proves the server acted, whatever reset
/// the stream after it.
pub fn error_is_unprocessed<E: 'static>(error: &E) -> bool {
    as_std_error(error).is_some_and(|error| {
        if chain(error).any(|e| e.is::<BodyError>()) {
            return false;
        }
        says_nothing_about_service(error)
            || chain(error).any(|e| {
                e.downcast_ref::<Injected>().is_some_and(|i| !i.was_sent())
                    || e.downcast_ref::<hyper_util::client::legacy::Error>()
                        .is_some_and(hyper_util::client::legacy::Error::is_connect)
                    || e.downcast_ref::<h2::Error>().is_some_and(h2_unprocessed)
                    || reqwest_connect(e)
            })
    })
}

/// Whether an HTTP/2 stream ended before the server acted on it: refused
/// (`REFUSED_STREAM`), or beyond the last stream a graceful `GOAWAY` said the
/// server would process (RFC 9113, 6.8).
fn h2_unprocessed(error: &h2::Error) -> bool {
    error.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR))
}

/// Classifies an HTTP status and its headers (read for the wait and
/// `x-should-retry`); see the table in the [module documentation](self).
pub fn classify_response(status: StatusCode, headers: &http::HeaderMap) -> Outcome {
    let code = status.as_u16();
    if code < 400 {
        return Outcome::Success;
    }
    let retry_after = || headers_retry_after(headers, SystemTime::now());
    let client_side = (400..500).contains(&code) && code != 408;
    match (should_retry(headers), code) {
        (Some(false), 429) => Outcome::Ignored,
        (Some(false), _) if client_side => Outcome::ClientError,
        (Some(false), _) => Outcome::Fatal,
        (_, 429) | (Some(true), _) if client_side => Outcome::Throttled {
            retry_after: retry_after(),
        },
        _ if client_side => Outcome::ClientError,
        _ => Outcome::Failure {
            retry_after: retry_after(),
        },
    }
}

/// Classifies an error of any type: [`Outcome::Ignored`] for an open circuit or a
/// pool timeout (found anywhere in the source chain of a [`BoxError`] or a
/// [`crate::Error`]), a retryable [`Outcome::Failure`] for everything else.
pub fn classify_error<E: 'static>(error: &E) -> Outcome {
    match as_std_error(error) {
        Some(error) if says_nothing_about_service(error) => Outcome::Ignored,
        // The service answered; a second try would be just as large.
        Some(error) if chain(error).any(|e| e.is::<BodyTooLarge>()) => Outcome::ClientError,
        _ => Outcome::Failure { retry_after: None },
    }
}

/// Whether `error` is a reqwest error that never reached the server.
#[cfg(feature = "reqwest")]
fn reqwest_connect(error: &(dyn StdError + 'static)) -> bool {
    error
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_connect)
}

#[cfg(not(feature = "reqwest"))]
fn reqwest_connect(_error: &(dyn StdError + 'static)) -> bool {
    false
}

/// Whether an error of any type is (or wraps) a [`CircuitOpen`].
pub(crate) fn is_circuit_open<E: 'static>(error: &E) -> bool {
    as_std_error(error).is_some_and(|e| chain(e).any(|e| e.is::<CircuitOpen>()))
}

/// Whether an error of any type is (or wraps) an [`Elapsed`] cut by the call's
/// deadline.
pub(crate) fn is_deadline<E: 'static>(error: &E) -> bool {
    as_std_error(error).is_some_and(cut_by_deadline)
}

/// The kind of an error of any type the stack produces, if it has one.
pub(crate) fn error_kind<E: 'static>(error: &E) -> Option<ErrorKind> {
    as_std_error(error).and_then(ErrorKind::of)
}

/// Whether an error of any type is (or wraps) a rate limiter's refusal.
pub(crate) fn is_rate_limited<E: 'static>(error: &E) -> bool {
    as_std_error(error).is_some_and(|e| chain(e).any(|e| e.is::<RateLimited>()))
}

/// A refusal made in the process (an open circuit, no free slot, a rate
/// limit's "not now"): the service never saw the call.
fn says_nothing_about_service(error: &(dyn StdError + 'static)) -> bool {
    // Anywhere in the chain: a client's error (reqwest's, say) may wrap one.
    chain(error).any(|e| {
        matches!(
            ErrorKind::of(e),
            Some(ErrorKind::CircuitOpen | ErrorKind::PoolTimeout | ErrorKind::RateLimited)
        )
    })
}

/// Views a value of an unknown error type as a `dyn Error`, for the types a
/// tower stack produces.
fn as_std_error<E: 'static>(error: &E) -> Option<&(dyn StdError + 'static)> {
    let any = error as &dyn Any;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        return Some(&**boxed);
    }
    if let Some(e) = any.downcast_ref::<Error>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<CircuitOpen>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<PoolTimeout>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<RateLimited>() {
        return Some(e);
    }
    #[cfg(feature = "reqwest")]
    if let Some(e) = any.downcast_ref::<reqwest::Error>() {
        return Some(e);
    }
    None
}

#[cfg(test)]
mod tests;
