//! Error types for the timeout layer.

use std::fmt;
use std::time::Duration;

/// An attempt took longer than its limit; returned by
/// [`TimeoutService`](super::TimeoutService) inside a [`BoxError`](crate::BoxError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    limit: Duration,
}

impl Elapsed {
    /// Creates the error for a limit of `limit`.
    pub const fn new(limit: Duration) -> Self {
        Elapsed { limit }
    }

    /// The limit that was exceeded.
    pub const fn limit(&self) -> Duration {
        self.limit
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request timed out after {:?}", self.limit)
    }
}

impl std::error::Error for Elapsed {}
