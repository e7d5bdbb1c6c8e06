//! The errors the layers add, kept below the classifier that recognises them.
//! Each is re-exported by its layer: [`CircuitOpen`](crate::circuit_breaker::CircuitOpen),
//! [`Elapsed`](crate::timeout::Elapsed), [`PoolTimeout`](crate::pool::PoolTimeout),
//! [`RateLimited`](crate::rate_limit::RateLimited), [`Injected`](crate::chaos::Injected).

use std::fmt;
use std::time::Duration;

/// The error a [`CircuitBreakerService`](crate::circuit_breaker::CircuitBreakerService) returns,
/// without calling the inner service, while the circuit is open or every
/// half-open test slot is taken.
///
/// It is returned inside a [`BoxError`](super::BoxError); test for it with
/// `err.is::<CircuitOpen>()`. Its message is exactly
/// `Circuit breaker OPEN - rejecting request`, so code ported from the original
/// design that matches on the text keeps working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CircuitOpen(());

impl CircuitOpen {
    /// Creates the error.
    pub const fn new() -> Self {
        CircuitOpen(())
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Circuit breaker OPEN - rejecting request")
    }
}

impl std::error::Error for CircuitOpen {}

/// An attempt took longer than its limit, or reached the call's
/// [`RequestDeadline`](crate::timeout::RequestDeadline); returned by
/// [`TimeoutService`](crate::timeout::TimeoutService) inside a [`BoxError`](super::BoxError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    limit: Duration,
    deadline: bool,
}

impl Elapsed {
    /// Creates the error for an attempt limit of `limit`.
    pub const fn new(limit: Duration) -> Self {
        Elapsed {
            limit,
            deadline: false,
        }
    }

    /// Creates the error for an attempt cut by the call's deadline, `limit`
    /// after it started.
    pub const fn deadline(limit: Duration) -> Self {
        Elapsed {
            limit,
            deadline: true,
        }
    }

    /// How long the attempt was allowed.
    pub const fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether the call's deadline, rather than the attempt's own limit, cut the
    /// attempt. Such an error is never retried: the call's time is up.
    pub const fn is_deadline(&self) -> bool {
        self.deadline
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deadline {
            write!(
                f,
                "request timed out after {:?}: the call's deadline was reached",
                self.limit
            )
        } else {
            write!(f, "request timed out after {:?}", self.limit)
        }
    }
}

impl std::error::Error for Elapsed {}

/// The error returned when no slot came free within the pool timeout: a
/// connection slot (all `max_connections` in use), or a stream slot on an
/// HTTP/2 connection (all the streams its server allows in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTimeout {
    waited: Duration,
}

impl PoolTimeout {
    /// Creates the error for a wait of `waited`.
    pub const fn new(waited: Duration) -> Self {
        PoolTimeout { waited }
    }

    /// How long the call waited for a slot.
    pub const fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for PoolTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no free connection or stream slot after waiting {:?} (pool_timeout)",
            self.waited
        )
    }
}

impl std::error::Error for PoolTimeout {}

/// The error returned, before anything is sent, when a call would have to
/// wait for a rate limit longer than it may: past its
/// [`RequestDeadline`](crate::timeout::RequestDeadline), or, without one,
/// longer than the limiter's longest wait. Returned by
/// [`RateLimitService`](crate::rate_limit::RateLimitService) inside a
/// [`BoxError`](super::BoxError); [`Error::is_rate_limited`](crate::Error::is_rate_limited)
/// tells it from the client's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    wait: Option<Duration>,
    allowed: Duration,
    account: Option<crate::provider::ProviderErrorKind>,
}

impl RateLimited {
    /// Creates the error for a call that would have had to wait `wait` (when
    /// known) but could wait only `allowed`.
    pub const fn new(wait: Option<Duration>, allowed: Duration) -> Self {
        RateLimited {
            wait,
            allowed,
            account: None,
        }
    }

    /// The same refusal, made while the provider cools down after refusing
    /// the account (`kind`: a spent quota, a refused key).
    pub(crate) const fn for_account(mut self, kind: crate::provider::ProviderErrorKind) -> Self {
        self.account = Some(kind);
        self
    }

    /// Why the provider cools down, when the call was held back because the
    /// provider refused the account (a spent quota, a refused key; see
    /// [`ProviderErrorKind::is_final_for_provider`](crate::provider::ProviderErrorKind::is_final_for_provider))
    /// rather than by a rate.
    pub const fn account_refused(&self) -> Option<crate::provider::ProviderErrorKind> {
        self.account
    }

    /// How long the call would have had to wait, when the limiter knew it.
    pub const fn wait(&self) -> Option<Duration> {
        self.wait
    }

    /// How long the call could have waited.
    pub const fn allowed(&self) -> Duration {
        self.allowed
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(kind), Some(wait)) = (self.account, self.wait) {
            return write!(
                f,
                "rate limited: the provider refused the account ({kind}), and its calls are held for {wait:.2?}, more than the {:.2?} this call may wait; nothing was sent",
                self.allowed
            );
        }
        match self.wait {
            Some(wait) => write!(
                f,
                "rate limited: the provider's limit would hold this call for {wait:.2?}, more than the {:.2?} it may wait; nothing was sent",
                self.allowed
            ),
            None => write!(
                f,
                "rate limited: no turn came within the {:.2?} this call may wait; nothing was sent",
                self.allowed
            ),
        }
    }
}

impl std::error::Error for RateLimited {}

/// A fault a [`ChaosLayer`](crate::chaos::ChaosLayer) injected in place of
/// the service's answer: a reset connection or a timeout. Inside a
/// [`BoxError`](super::BoxError); test for it with `err.is::<Injected>()`.
///
/// The classifier treats it as the failure it stands for: a failure of the
/// provider, retried by the replay rule, counted by the breaker; and one
/// injected before the request left as a request that was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    timeout: bool,
    sent: bool,
}

impl Injected {
    /// A connection reset; `sent` when the request reached the service first.
    pub const fn reset(sent: bool) -> Self {
        Injected {
            timeout: false,
            sent,
        }
    }

    /// A timeout; `sent` when the request reached the service first.
    pub const fn timeout(sent: bool) -> Self {
        Injected {
            timeout: true,
            sent,
        }
    }

    /// Whether it stands for a timeout (else a reset connection).
    pub const fn is_timeout(&self) -> bool {
        self.timeout
    }

    /// Whether the request reached the service before the fault (so the
    /// service may have acted on it).
    pub const fn was_sent(&self) -> bool {
        self.sent
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.timeout {
            "timed out"
        } else {
            "connection reset"
        };
        let when = if self.sent {
            "after the request was sent"
        } else {
            "before the request was sent"
        };
        write!(f, "{what} {when} (injected by ChaosLayer)")
    }
}

impl std::error::Error for Injected {}

/// A streamed answer showed no content in time: it sent no data for its
/// idle timeout, or (with a `first_token_timeout`) no content within that
/// limit, keep-alives and metadata notwithstanding. Returned by
/// [`ReadAhead`](crate::read_ahead::ReadAhead) inside a
/// [`BoxError`](super::BoxError).
///
/// The classifier treats it as an attempt's timeout: retried only when the
/// request is safe to repeat (the server may have taken it), and a
/// [`ProviderGroup`](crate::failover::ProviderGroup) moves on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStalled {
    idle: Duration,
    first_content: bool,
}

impl StreamStalled {
    /// Creates the error for a stream that sent nothing for `idle`.
    pub const fn new(idle: Duration) -> Self {
        StreamStalled {
            idle,
            first_content: false,
        }
    }

    /// Creates the error for a stream that showed no content within `limit`
    /// of the request (its first-token limit).
    pub const fn no_content_within(limit: Duration) -> Self {
        StreamStalled {
            idle: limit,
            first_content: true,
        }
    }

    /// How long the stream sent nothing, or, for
    /// [`no_content_within`](Self::no_content_within), its limit.
    pub const fn idle(&self) -> Duration {
        self.idle
    }

    /// Whether the first-token limit fired, rather than the idle timeout.
    pub const fn is_first_content(&self) -> bool {
        self.first_content
    }
}

impl fmt::Display for StreamStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first_content {
            write!(
                f,
                "the stream sent no content within {:?} of the request (first_token_timeout)",
                self.idle
            )
        } else {
            write!(
                f,
                "the stream sent no data for {:?} before its first content",
                self.idle
            )
        }
    }
}

impl std::error::Error for StreamStalled {}

/// The error of an HTTP/2 attempt whose request body made no progress for the
/// client's `write_timeout`: the peer granted no flow-control window (or the
/// connection under the stream stopped). Like a write that stalls on an
/// HTTP/1 socket, a [`Timeout`](crate::ErrorKind::Timeout); the request did
/// not arrive whole, but the server may have begun to act on it, so the
/// attempt is retried only when the request is safe to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStalled {
    idle: Duration,
}

impl WriteStalled {
    /// Creates the error for a body that made no progress for `idle`.
    pub const fn new(idle: Duration) -> Self {
        WriteStalled { idle }
    }

    /// How long the body made no progress.
    pub const fn idle(&self) -> Duration {
        self.idle
    }
}

impl fmt::Display for WriteStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body made no progress for {:?}: the peer granted no flow-control window",
            self.idle
        )
    }
}

impl std::error::Error for WriteStalled {}
