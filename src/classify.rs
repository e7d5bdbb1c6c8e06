//! One place that decides what the result of a call means.
//!
//! Every layer reads an attempt's result through a classifier, which turns it into
//! an [`Outcome`]: whether it is retried, and whether it counts against the
//! circuit breaker. The HTTP classifier follows this table:
//!
//! | result | retried? | breaker failure? |
//! | --- | --- | --- |
//! | 1xx, 2xx, 3xx | no | no (success) |
//! | 408, 5xx (and made-up codes ≥ 600) | yes | yes |
//! | 429 Too Many Requests | yes, after `Retry-After` | no: the service is alive |
//! | other 4xx | no | no: the caller's mistake |
//! | transport error (refused, reset, DNS, TLS) | yes | yes |
//! | attempt timeout ([`Elapsed`](crate::timeout::Elapsed)) | yes | yes |
//! | pool timeout ([`PoolTimeout`]) | no | no: local congestion |
//! | [`CircuitOpen`] | never | no |
//! | future dropped by the caller | – | no, and held slots are freed |
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

use crate::error::{BodyTooLarge, BoxError, CircuitOpen, Error, PoolTimeout, chain};

pub use crate::retry_after::parse_retry_after;

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
    /// The service is alive but asks the caller to slow down (429). Retried, no
    /// sooner than `retry_after`; a success for the breaker.
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
}

impl Outcome {
    /// Whether the retry layer may try the call again.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Throttled { .. } | Outcome::Failure { .. })
    }

    /// Whether the circuit breaker counts this as a failure.
    pub const fn is_breaker_failure(&self) -> bool {
        matches!(self, Outcome::Failure { .. })
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
            Outcome::Failure { .. } => "failure",
            _ => "ignored",
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
            Ok(response) => classify_response(response.status(), response.headers()),
            Err(error) => classify_error(error),
        }
    }

    fn describe(&self, response: &http::Response<B>) -> Cow<'static, str> {
        Cow::Owned(response.status().to_string())
    }
}

/// Classifies an HTTP status and its headers (read for `Retry-After`).
pub fn classify_response(status: StatusCode, headers: &http::HeaderMap) -> Outcome {
    let retry_after = || {
        headers
            .get(http::header::RETRY_AFTER)
            .and_then(|value| parse_retry_after(value, SystemTime::now()))
    };
    match status.as_u16() {
        100..=399 => Outcome::Success,
        408 => Outcome::Failure {
            retry_after: retry_after(),
        },
        429 => Outcome::Throttled {
            retry_after: retry_after(),
        },
        400..=499 => Outcome::ClientError,
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

/// Whether an error of any type is (or wraps) a [`CircuitOpen`].
pub(crate) fn is_circuit_open<E: 'static>(error: &E) -> bool {
    as_std_error(error).is_some_and(|e| chain(e).any(|e| e.is::<CircuitOpen>()))
}

fn says_nothing_about_service(error: &(dyn StdError + 'static)) -> bool {
    chain(error).any(|e| e.is::<CircuitOpen>() || e.is::<PoolTimeout>())
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
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn status(code: u16) -> Outcome {
        let code = StatusCode::from_u16(code).expect("valid test status");
        classify_response(code, &http::HeaderMap::new())
    }

    #[test]
    fn statuses_follow_the_table() {
        for code in [200, 201, 204, 301, 304] {
            assert_eq!(status(code), Outcome::Success, "{code}");
        }
        for code in [408, 500, 502, 503, 504, 599, 600, 999] {
            let outcome = status(code);
            assert!(
                outcome.is_retryable() && outcome.is_breaker_failure(),
                "{code}"
            );
        }
        let throttled = status(429);
        assert!(throttled.is_retryable() && !throttled.is_breaker_failure());
        for code in [400, 401, 403, 404, 409, 422] {
            let outcome = status(code);
            assert_eq!(outcome, Outcome::ClientError, "{code}");
            assert!(!outcome.is_retryable() && !outcome.is_breaker_failure());
        }
    }

    #[test]
    fn retry_after_is_read_from_throttled_and_failed_responses() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            classify_response(StatusCode::TOO_MANY_REQUESTS, &headers).retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            classify_response(StatusCode::SERVICE_UNAVAILABLE, &headers).retry_after(),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn errors_are_failures_except_open_circuit_and_pool_timeout() {
        let io: BoxError = Box::new(std::io::Error::other("reset"));
        assert!(
            ErrorsAreFailures
                .classify(Err::<&(), _>(&io))
                .is_breaker_failure()
        );
        let open: BoxError = Box::new(CircuitOpen::new());
        assert_eq!(
            ErrorsAreFailures.classify(Err::<&(), _>(&open)),
            Outcome::Ignored
        );
        assert!(is_circuit_open(&open));
        assert!(!is_circuit_open(&io));
        let pool: BoxError = Box::new(PoolTimeout::new(Duration::from_secs(1)));
        assert_eq!(
            ErrorsAreFailures.classify(Err::<&(), _>(&pool)),
            Outcome::Ignored
        );
        // An error type the classifier cannot look into is a plain failure.
        let plain = std::io::Error::other("x");
        assert!(
            ErrorsAreFailures
                .classify(Err::<&(), _>(&plain))
                .is_breaker_failure()
        );
        assert_eq!(
            ErrorsAreFailures.classify(Ok::<_, &BoxError>(&())),
            Outcome::Success
        );
    }
}
