//! The breaker's settings and the snapshot of its counts.

use std::time::{Duration, SystemTime};

use super::state::CircuitState;
use crate::error::ConfigError;

/// Settings of a [`CircuitBreaker`](super::CircuitBreaker).
///
/// `Default` gives the values recommended for most providers: 15 consecutive
/// failures, 60 seconds of recovery time, 3 half-open test calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the circuit (default 15).
    ///
    /// A value of 0 is treated as 1; [`validate`](Self::validate) reports it.
    pub failure_threshold: u32,
    /// Time spent OPEN before the next check moves the circuit to HALF_OPEN
    /// (default 60 s).
    pub timeout: Duration,
    /// Test calls admitted in HALF_OPEN, all of which must succeed to close the
    /// circuit (default 3).
    ///
    /// A value of 0 is treated as 1; [`validate`](Self::validate) reports it.
    pub half_open_max_calls: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 15,
            timeout: Duration::from_secs(60),
            half_open_max_calls: 3,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks the settings, naming the first field that breaks a rule.
    ///
    /// [`CircuitBreaker::new`](super::CircuitBreaker::new) never fails: it treats zero counts as 1. Call this
    /// where a configuration comes from a user and a silent correction would hide a
    /// mistake.
    ///
    /// ```
    /// use stache_resilience::CircuitBreakerConfig;
    /// let bad = CircuitBreakerConfig { failure_threshold: 0, ..Default::default() };
    /// let err = bad.validate().unwrap_err();
    /// assert_eq!(err.field(), "failure_threshold");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be at least 1"));
        }
        if self.half_open_max_calls == 0 {
            return Err(ConfigError::new(
                "half_open_max_calls",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A snapshot of a [`CircuitBreaker`](super::CircuitBreaker), from [`CircuitBreaker::stats`](super::CircuitBreaker::stats).
///
/// Stats are read, never built: more fields may come.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CircuitStats {
    /// The state at the time of the snapshot.
    pub state: CircuitState,
    /// Consecutive failures counted so far (reset by a success while closed and
    /// when the circuit closes).
    pub failure_count: u32,
    /// Successful test calls in the current half-open period (0 in other states).
    pub success_count: u32,
    /// Wall-clock time of the most recent failure, if any.
    pub last_failure: Option<SystemTime>,
    /// While open, how long this open period lasts (jitter included);
    /// otherwise how long the next one would last, before jitter. Always
    /// `timeout` with [`OpenBackoff::Fixed`](super::OpenBackoff::Fixed); with
    /// [`OpenBackoff::Exponential`](super::OpenBackoff::Exponential) it grows
    /// with each failed recovery and comes back to `timeout` when the circuit
    /// closes. A circuit [forced open](super::CircuitBreaker::force_open)
    /// stays open until reset, whatever this says. In seconds when serialized.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub open_time: Duration,
}
