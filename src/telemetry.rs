//! The metrics reported with the feature `metrics`, through the
//! [`metrics`](https://docs.rs/metrics) facade: install any exporter
//! (Prometheus, StatsD, OpenTelemetry) and read them there.
//!
//! Each layer reports its own series once it is named, labelled `provider =
//! name`: [`RetryLayer::provider`](crate::RetryLayer::provider),
//! [`CircuitBreakerBuilder::provider`](crate::circuit_breaker::CircuitBreakerBuilder::provider),
//! [`HedgeLayer::provider`](crate::hedge::HedgeLayer::provider) and
//! [`RateLimiter::provider`](crate::rate_limit::RateLimiter::provider). So a stack
//! of the crate's layers over reqwest, tonic or hyper-util reports the same
//! series as an [`HttpClient`](crate::HttpClient), which names its layers with
//! the provider's name (given to
//! [`ServiceRegistry::get_client`](crate::ServiceRegistry::get_client) or
//! [`HttpClient::for_provider`](crate::HttpClient::for_provider); `default`
//! otherwise) and adds the series of whole calls. An unnamed layer reports
//! nothing and pays nothing for it. Naming a layer also gives every series its
//! unit and help text (`describe_*`), to the recorder installed at that time.
//!
//! | name | kind | labels | from | what |
//! | --- | --- | --- | --- | --- |
//! | `stache_attempts_total` | counter | `provider` | retry | attempts made (first attempts and retries; hedged copies apart) |
//! | `stache_retries_total` | counter | `provider` | retry | retries made |
//! | `stache_retry_budget_exhausted_total` | counter | `provider` | retry | retries refused because the retry budget was spent |
//! | `stache_breaker_state` | gauge | `provider` | breaker | 0 closed, 1 open, 2 half-open |
//! | `stache_breaker_transitions_total` | counter | `provider`, `to` | breaker | state changes, by the state entered: `closed`, `open`, `half_open` |
//! | `stache_breaker_rejections_total` | counter | `provider` | breaker | calls refused by the open circuit, or with every half-open slot taken |
//! | `stache_rate_limit_waits_total` | counter | `provider` | rate limiter | calls that waited for their turn |
//! | `stache_rate_limit_refusals_total` | counter | `provider` | rate limiter | calls refused because their turn was past their deadline |
//! | `stache_rate_limit_throttled_total` | counter | `provider` | rate limiter | throttled answers seen: 429s, and 503s that asked for a wait |
//! | `stache_hedges_sent_total` | counter | `provider` | hedge | copies sent |
//! | `stache_hedges_won_total` | counter | `provider` | hedge | copies whose answer came first and was kept |
//! | `stache_hedges_refused_total` | counter | `provider` | hedge | copies due but refused by a budget |
//! | `stache_requests_total` | counter | `provider` | client | calls made (once each, whatever their retries) |
//! | `stache_failures_total` | counter | `provider`, `outcome` | client | calls that failed, by class: `timeout`, `connect`, `pool_timeout`, `status`, `transport`, `body`, `decode`, `request` |
//! | `stache_attempt_duration_seconds` | histogram | `provider`, `outcome` | client | time of each request sent, body included for buffered calls; `outcome` is `success`, `client_error`, `throttled`, `failure` or `ignored` (see [`classify`](crate::classify)), or `cancelled` for an attempt cut short by its timeout or its caller |
//!
//! The tracing side needs no feature: each call runs in a `WARN` span
//! `request{request_id, method, endpoint, provider}`, and retries and breaker
//! transitions are events inside it. The span is at `WARN` so that a filter of
//! `warn` still shows the `WARN` events with their request ID.

/// Calls made.
pub const REQUESTS: &str = "stache_requests_total";
/// Attempts sent.
pub const ATTEMPTS: &str = "stache_attempts_total";
/// Retries sent.
pub const RETRIES: &str = "stache_retries_total";
/// Retries refused because the retry budget was spent.
pub const RETRY_BUDGET_EXHAUSTED: &str = "stache_retry_budget_exhausted_total";
/// Calls refused by the open circuit.
pub const BREAKER_REJECTIONS: &str = "stache_breaker_rejections_total";
/// The breaker's state changes, by the state entered.
pub const BREAKER_TRANSITIONS: &str = "stache_breaker_transitions_total";
/// Failed calls, by class.
pub const FAILURES: &str = "stache_failures_total";
/// The breaker's state: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "stache_breaker_state";
/// Seconds per attempt, by outcome.
pub const ATTEMPT_DURATION: &str = "stache_attempt_duration_seconds";
/// Calls that waited for their turn at the rate limiter.
pub const RATE_LIMIT_WAITS: &str = "stache_rate_limit_waits_total";
/// Calls the rate limiter refused (their turn was past their deadline).
pub const RATE_LIMIT_REFUSALS: &str = "stache_rate_limit_refusals_total";
/// Throttled answers the rate limiter saw (429s, and 503s asking for a wait).
pub const RATE_LIMIT_THROTTLED: &str = "stache_rate_limit_throttled_total";
/// Hedged copies sent.
pub const HEDGES_SENT: &str = "stache_hedges_sent_total";
/// Hedged copies whose answer came first.
pub const HEDGES_WON: &str = "stache_hedges_won_total";
/// Hedged copies that were due but refused by a budget.
pub const HEDGES_REFUSED: &str = "stache_hedges_refused_total";

/// Where one layer reports its metrics: the `provider` label it puts on them,
/// once the layer is named. An unnamed layer, or any layer without the
/// feature `metrics`, reports nothing and pays nothing.
#[derive(Clone, Default)]
pub(crate) struct Meter {
    #[cfg(feature = "metrics")]
    provider: Option<std::sync::Arc<str>>,
}

impl Meter {
    /// A meter labelling with `provider`; describes every series of the crate
    /// to the recorder installed now (with their units and help).
    pub(crate) fn named(provider: std::sync::Arc<str>) -> Self {
        #[cfg(feature = "metrics")]
        {
            describe();
            Meter {
                provider: Some(provider),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = provider;
            Meter {}
        }
    }

    /// Whether the meter reports anything.
    #[inline]
    pub(crate) fn is_named(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.provider.is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// Adds one to the counter `name`.
    #[inline]
    pub(crate) fn count(&self, name: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(provider) = &self.provider {
            ::metrics::counter!(name, "provider" => provider.clone()).increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = name;
    }

    /// Adds one to the counter `name`, with one more label.
    #[inline]
    pub(crate) fn count_by(&self, name: &'static str, key: &'static str, value: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(provider) = &self.provider {
            ::metrics::counter!(name, "provider" => provider.clone(), key => value).increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (name, key, value);
    }

    /// Sets the gauge `name`.
    #[inline]
    pub(crate) fn set(&self, name: &'static str, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(provider) = &self.provider {
            ::metrics::gauge!(name, "provider" => provider.clone()).set(value);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (name, value);
    }
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(feature = "metrics")]
        return f.debug_tuple("Meter").field(&self.provider).finish();
        #[cfg(not(feature = "metrics"))]
        f.write_str("Meter")
    }
}

/// Gives every series its unit and help text, for exporters that show them
/// (Prometheus' `# HELP`, OpenTelemetry's description). Cheap and idempotent:
/// it runs when a layer is named, not per call.
#[cfg(feature = "metrics")]
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (name, help) in [
        (
            REQUESTS,
            "Calls made through a client, once each whatever their retries.",
        ),
        (
            ATTEMPTS,
            "Attempts a retry layer sent: first attempts and retries (hedged copies apart).",
        ),
        (RETRIES, "Retries a retry layer sent."),
        (
            RETRY_BUDGET_EXHAUSTED,
            "Retries refused because the retry budget was spent.",
        ),
        (
            BREAKER_REJECTIONS,
            "Calls refused by an open circuit (or with every half-open probe slot taken).",
        ),
        (
            BREAKER_TRANSITIONS,
            "Circuit state changes, labelled with the state entered (`to`).",
        ),
        (
            FAILURES,
            "Calls through a client that failed, by class (`outcome`).",
        ),
        (
            RATE_LIMIT_WAITS,
            "Calls that waited for their turn at the rate limiter.",
        ),
        (
            RATE_LIMIT_REFUSALS,
            "Calls the rate limiter refused because their turn was past their deadline.",
        ),
        (
            RATE_LIMIT_THROTTLED,
            "Throttled answers seen by the rate limiter: 429s, and 503s asking for a wait.",
        ),
        (HEDGES_SENT, "Hedged copies sent."),
        (
            HEDGES_WON,
            "Hedged copies whose answer came first and was kept.",
        ),
        (
            HEDGES_REFUSED,
            "Hedged copies that were due but refused by a budget.",
        ),
    ] {
        describe_counter!(name, Unit::Count, help);
    }
    describe_gauge!(
        BREAKER_STATE,
        "The circuit's state: 0 closed, 1 open, 2 half-open."
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Time of each attempt a client sent, labelled with its `outcome`."
    );
}
