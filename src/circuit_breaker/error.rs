//! Error types for the circuit breaker.

use std::fmt;

/// The error a [`CircuitBreakerService`](super::CircuitBreakerService) returns,
/// without calling the inner service, while the circuit is open or every
/// half-open test slot is taken.
///
/// It is returned inside a [`BoxError`](crate::BoxError); test for it with
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
