//! The names of the metrics reported with the feature `metrics`, through the [`metrics`](https://docs.rs/metrics)
//! facade: install any exporter (Prometheus, StatsD, OpenTelemetry) and every
//! [`HttpClient`](crate::HttpClient) reports these, labelled with `provider` (the
//! name given to [`ServiceRegistry::get_client`](crate::ServiceRegistry::get_client)
//! or [`HttpClient::for_provider`](crate::HttpClient::for_provider); `default`
//! otherwise):
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `stache_requests_total` | counter | `provider` | calls made (once each, whatever their retries) |
//! | `stache_attempts_total` | counter | `provider` | attempts sent (first attempts and retries) |
//! | `stache_retries_total` | counter | `provider` | retries sent |
//! | `stache_breaker_rejections_total` | counter | `provider` | calls refused by the open circuit |
//! | `stache_failures_total` | counter | `provider`, `outcome` | calls that failed, by class: `timeout`, `connect`, `pool_timeout`, `status`, `transport`, `body`, `decode`, `request` |
//! | `stache_breaker_state` | gauge | `provider` | 0 closed, 1 open, 2 half-open |
//! | `stache_attempt_duration_seconds` | histogram | `provider`, `outcome` | time of each attempt, body included for buffered calls; `outcome` is `success`, `client_error`, `throttled`, `failure` or `ignored` (see [`classify`](crate::classify)), or `cancelled` for an attempt cut short by its timeout or its caller |
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
/// Calls refused by the open circuit.
pub const BREAKER_REJECTIONS: &str = "stache_breaker_rejections_total";
/// Failed calls, by class.
pub const FAILURES: &str = "stache_failures_total";
/// The breaker's state: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "stache_breaker_state";
/// Seconds per attempt, by outcome.
pub const ATTEMPT_DURATION: &str = "stache_attempt_duration_seconds";
