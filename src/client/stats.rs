//! What a client counts: [`ClientStats`] and the counters behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::HttpClientConfig;
use crate::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::error::Error;
use crate::hedge::HedgeStats;
use crate::pool::PoolLimitLayer;
use crate::rate_limit::{RateLimitStats, RateLimiter};
use crate::retry::RetryStats;
use crate::telemetry;

/// A client's settings and live counters; from [`HttpClient::stats`](super::HttpClient::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ClientStats {
    /// The base URL.
    pub base_url: String,
    /// Per-attempt timeout (seconds when serialized).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub default_timeout: Duration,
    /// Requests in flight at once.
    pub max_connections: usize,
    /// Idle connections kept.
    pub max_keepalive_connections: usize,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay (seconds when serialized).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub retry_base_delay: Duration,
    /// Backoff cap (seconds when serialized).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub retry_max_delay: Duration,
    /// The breaker's state now.
    pub circuit_breaker_state: CircuitState,
    /// Consecutive failures that open the circuit.
    pub circuit_breaker_threshold: u32,
    /// Calls made (each counts once, whatever its retries).
    pub requests: u64,
    /// Attempts made (first attempts and retries), whether or not they reached
    /// the server; hedged copies are counted in [`hedge`](Self::hedge).
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls refused by the breaker (open, or every half-open test slot taken).
    pub rejected: u64,
    /// Calls that ended in an error other than an open circuit.
    pub failures: u64,
    /// Calls in progress now.
    pub in_flight: u64,
    /// Connection slots free now (of `max_connections`).
    pub free_connection_slots: usize,
    /// The rate limiter's counters, pace and gate.
    pub rate_limit: RateLimitStats,
    /// Hedged copies sent and won.
    pub hedge: HedgeStats,
}

/// A client's live counters, and the metrics that go with them. Every count of
/// a call is made here.
#[derive(Debug)]
pub(super) struct Counters {
    requests: AtomicU64,
    rejected: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicU64,
    /// The `provider` label of the metrics: the provider name, or `default`.
    #[cfg(feature = "metrics")]
    label: Arc<str>,
}

impl Counters {
    pub(super) fn new(label: Arc<str>) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = label;
        Counters {
            requests: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            label,
        }
    }

    /// Counts a call, and holds it as in flight until the guard is dropped.
    pub(super) fn call_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metric(telemetry::REQUESTS, None);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the end of a call [`call_started`](Self::call_started) counted,
    /// however it ended (dropped included).
    pub(super) fn call_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a call that ended in `error`: a rejection if the circuit refused
    /// it, a failure of its kind otherwise.
    pub(super) fn call_failed(&self, error: &Error) {
        if error.is_circuit_open() {
            // The breaker reports its refusals itself.
            self.rejected.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.metric(telemetry::FAILURES, Some(error.kind().label()));
        }
    }

    /// Increments a metrics counter labelled with the provider (and `outcome`).
    #[inline]
    fn metric(&self, name: &'static str, outcome: Option<&'static str>) {
        #[cfg(feature = "metrics")]
        {
            let provider = self.label.clone();
            match outcome {
                Some(outcome) => {
                    ::metrics::counter!(name, "provider" => provider, "outcome" => outcome)
                        .increment(1)
                }
                None => ::metrics::counter!(name, "provider" => provider).increment(1),
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (name, outcome);
    }

    /// The settings of `config` and the counts of now.
    pub(super) fn snapshot(
        &self,
        config: &HttpClientConfig,
        breaker: &CircuitBreaker,
        retries: &RetryStats,
        pool: &PoolLimitLayer,
        limiter: &RateLimiter,
        hedge: HedgeStats,
    ) -> ClientStats {
        ClientStats {
            base_url: config.base_url.clone(),
            default_timeout: config.default_timeout,
            max_connections: config.max_connections,
            max_keepalive_connections: config.max_keepalive_connections,
            max_retries: config.max_retries,
            retry_base_delay: config.retry_base_delay,
            retry_max_delay: config.retry_max_delay,
            circuit_breaker_state: breaker.state(),
            circuit_breaker_threshold: config.circuit_breaker_threshold,
            requests: self.requests.load(Ordering::Relaxed),
            attempts: retries.attempts(),
            retries: retries.retries(),
            rejected: self.rejected.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            free_connection_slots: pool.available(),
            rate_limit: limiter.stats(),
            hedge,
        }
    }
}
