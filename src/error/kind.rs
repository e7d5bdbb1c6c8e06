//! [`ErrorKind`], and the one function that tells the kind of any error a
//! stack of this crate's layers (or a client under them) can return:
//! [`ErrorKind::of`]. [`Error`](super::Error), the classifiers,
//! [`grpc::StatusLayer`](crate::grpc) and
//! [`server::error_response`](crate::server::error_response) all ask it, so an
//! error means the same thing wherever it is read.

use std::error::Error as StdError;

use super::{
    BodyError, BodyTooLarge, CircuitOpen, Elapsed, Error, Injected, PoolTimeout, RateLimited,
    StreamStalled, WriteStalled, chain,
};

/// What went wrong, broadly; see [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The circuit breaker is open; nothing was sent.
    CircuitOpen,
    /// An attempt, a socket write, or a stream's wait for data ran out of time.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS handshake, connect
    /// timeout).
    Connect,
    /// No connection slot came free within the pool timeout; nothing was sent.
    PoolTimeout,
    /// The server answered with a status other than 2xx (after retries).
    Status,
    /// The connection failed after it was made (reset, closed early).
    Transport,
    /// The response body was too large, broken, or not valid text.
    Body,
    /// The response body was not the JSON that was asked for.
    Decode,
    /// The configuration breaks a rule.
    Config,
    /// The request could not be built (a bad endpoint, a body that does not
    /// serialize).
    Request,
    /// A rate limit would have held the call past its deadline (or the
    /// limiter's longest wait); nothing was sent. See
    /// [`Error::is_rate_limited`].
    RateLimited,
}

impl ErrorKind {
    /// The kind of `error`, read along its source chain: the first error of
    /// this crate found (an [`Error`], or a layer's [`CircuitOpen`],
    /// [`PoolTimeout`], [`RateLimited`], [`Elapsed`], [`Injected`], a body
    /// error, a reqwest or tonic error), else what a hyper-util client's error
    /// says (a connect failure, a socket timeout, a broken connection). `None`
    /// for an error that nothing in the chain explains, such as a handler's
    /// own (an I/O error of its own included): a caller turning it into an
    /// answer should treat it as its own failure, not the provider's.
    ///
    /// ```
    /// use stache_resilience::ErrorKind;
    /// use stache_resilience::rate_limit::RateLimited;
    /// use std::time::Duration;
    ///
    /// let refused: stache_resilience::BoxError =
    ///     Box::new(RateLimited::new(Some(Duration::from_secs(3)), Duration::from_secs(1)));
    /// assert_eq!(ErrorKind::of(&*refused), Some(ErrorKind::RateLimited));
    /// let other: stache_resilience::BoxError = "a handler's own failure".into();
    /// assert_eq!(ErrorKind::of(&*other), None);
    /// ```
    pub fn of(error: &(dyn StdError + 'static)) -> Option<ErrorKind> {
        let mut connect = false;
        // Below a client's error (hyper-util's), an I/O, hyper or h2 error is
        // the connection's; found alone, it may be a handler's own.
        let mut transport = false;
        for e in chain(error) {
            if let Some(error) = e.downcast_ref::<Error>() {
                return Some(error.kind());
            }
            if e.is::<CircuitOpen>() {
                return Some(ErrorKind::CircuitOpen);
            }
            if e.is::<PoolTimeout>() {
                return Some(ErrorKind::PoolTimeout);
            }
            if e.is::<RateLimited>() {
                return Some(ErrorKind::RateLimited);
            }
            if e.is::<Elapsed>() || e.is::<StreamStalled>() || e.is::<WriteStalled>() {
                return Some(ErrorKind::Timeout);
            }
            if e.is::<BodyTooLarge>() || e.is::<BodyError>() {
                return Some(ErrorKind::Body);
            }
            if let Some(injected) = e.downcast_ref::<Injected>() {
                return Some(if injected.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transport
                });
            }
            if let Some(kind) = foreign(e) {
                return Some(kind);
            }
            if let Some(client) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
                connect |= client.is_connect();
                transport = true;
            }
            if transport {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    if io.kind() == std::io::ErrorKind::TimedOut && !connect {
                        return Some(ErrorKind::Timeout);
                    }
                }
            }
        }
        if connect {
            Some(ErrorKind::Connect)
        } else if transport {
            Some(ErrorKind::Transport)
        } else {
            None
        }
    }

    /// The `outcome` label of a failed call in the metrics.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::PoolTimeout => "pool_timeout",
            ErrorKind::Status => "status",
            ErrorKind::Transport => "transport",
            ErrorKind::Body => "body",
            ErrorKind::Decode => "decode",
            ErrorKind::Config => "config",
            ErrorKind::Request => "request",
            ErrorKind::RateLimited => "rate_limited",
        }
    }
}

/// What the error of a client this crate wraps (reqwest, tonic) says, when it
/// is one.
#[allow(clippy::unnecessary_wraps)]
fn foreign(error: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    #[cfg(feature = "reqwest")]
    if let Some(e) = error.downcast_ref::<reqwest::Error>() {
        return Some(if e.is_connect() {
            ErrorKind::Connect
        } else if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_body() || e.is_decode() {
            ErrorKind::Body
        } else {
            ErrorKind::Transport
        });
    }
    #[cfg(feature = "tonic")]
    if error.is::<tonic::TimeoutExpired>() {
        // The channel's own timer, set from the `grpc-timeout` the stack sent.
        return Some(ErrorKind::Timeout);
    }
    let _ = error;
    None
}
