//! A circuit breaker that stops calls to a service that keeps failing.
//!
//! The breaker is a three-state machine shared by every caller of one service:
//!
//! ```text
//! CLOSED   --(failure_threshold consecutive failures)-->  OPEN
//! OPEN     --(timeout elapsed, seen by the next check)-->  HALF_OPEN
//! HALF_OPEN --(half_open_max_calls successes)---------->  CLOSED
//! HALF_OPEN --(any failure)----------------------------->  OPEN
//! ```
//!
//! * **Closed**: every call passes. Each failure adds one to `failure_count`; a
//!   success resets it to zero, so only *consecutive* failures open the circuit
//!   (by default: a failure rate or slow calls can open it too, see
//!   [choosing a trip policy](#choosing-a-trip-policy)).
//! * **Open**: calls are refused at once. The circuit does not run a timer task:
//!   the first look after `timeout` has elapsed ([`state`](CircuitBreaker::state),
//!   [`can_attempt`](CircuitBreaker::can_attempt), or a call admitted by
//!   [`CircuitBreakerLayer`] or [`HttpClient`](crate::HttpClient)) moves it to
//!   half-open. With [`OpenBackoff::Exponential`] the open time grows after
//!   each failed recovery.
//! * **Half-open**: at most `half_open_max_calls` test calls are let through. Each
//!   admission takes one slot; slots come back only when the period ends (all
//!   probes succeeded: closed; any failed: open again) or, when the breaker is
//!   used through [`CircuitBreakerLayer`] or [`HttpClient`](crate::HttpClient),
//!   when a probe's future is dropped before it finished, or its call ended saying
//!   nothing about the service.
//! * **A probe is one attempt.** While [`CircuitBreakerLayer`] polls a
//!   half-open call's future, [`is_probe`] says so, and the layers below ask:
//!   the [`RetryLayer`](crate::RetryLayer) sends a probe once, with no retry
//!   and no backoff, and the [`HedgeLayer`](crate::hedge::HedgeLayer) sends
//!   no copy of it. A provider that is still down costs one request, and the
//!   probe's caller has its error at once (a
//!   [`ProviderGroup`](crate::failover::ProviderGroup) moves on to the next
//!   member). The same holds in a stack of your own with the breaker above the
//!   retry layer, as in [`HttpClient`](crate::HttpClient).
//! * **Attempts or calls.** By default (the original design's rule) a call
//!   counts once, after its last attempt. With
//!   [`count_attempts`](CircuitBreakerBuilder::count_attempts) (or
//!   [`BreakerOptions::count_attempts`]), the retry layer below reports each
//!   failed attempt it retries, so an outage under load opens the circuit
//!   after `failure_threshold` failed attempts instead of after that many
//!   calls have run their whole retry schedules, and a call whose attempts
//!   opened it stops retrying.
//!
//! Time is read from [`tokio::time::Instant`], so tests can pause and advance the
//! clock. Each transition emits one `tracing` event (`WARN` when the circuit opens,
//! `INFO` otherwise) with the old and new state. Refused calls are logged at
//! `WARN` as `Circuit breaker OPEN - rejecting request`: the first of each open
//! period, then at most one line a second with the count refused since.
//!
//! An operator can steer the breaker: [`force_open`](CircuitBreaker::force_open)
//! refuses every call until [`reset`](CircuitBreaker::reset), which closes the
//! circuit and zeroes its counts.
//!
//! # Example
//!
//! Using the breaker by hand, around any fallible call: take a
//! [`CallPermit`] with [`try_acquire`](CircuitBreaker::try_acquire) and report
//! the outcome through it. A permit that is dropped unreported (a panic, a
//! cancelled future) gives its half-open slot back, so nothing can strand the
//! breaker. The original design's `can_attempt()` and `record_*` work too; a
//! half-open slot taken by `can_attempt()` that never gets an outcome is
//! reclaimed after `timeout`.
//!
//! ```
//! use std::time::Duration;
//! use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
//! use stache_resilience::circuit_breaker::CircuitState;
//!
//! let breaker = CircuitBreaker::new(CircuitBreakerConfig {
//!     failure_threshold: 3,
//!     timeout: Duration::from_secs(60),
//!     half_open_max_calls: 1,
//! });
//!
//! for _ in 0..3 {
//!     let permit = breaker.try_acquire().expect("closed: admitted");
//!     // ... the call failed:
//!     permit.failure();
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! assert!(!breaker.can_attempt());
//! assert_eq!(breaker.stats().failure_count, 3);
//! ```
//!
//! As a `tower` layer, where the breaker decides before the inner service is
//! touched:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
//! use stache_resilience::circuit_breaker::CircuitOpen;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreaker::new(CircuitBreakerConfig { failure_threshold: 1, ..Default::default() });
//! let mut svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) });
//!
//! assert!(svc.ready().await.unwrap().call(()).await.is_err()); // opens the circuit
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! assert_eq!(err.to_string(), "Circuit breaker OPEN - rejecting request");
//! # }
//! ```
//!
//! # Choosing a trip policy
//!
//! [`CircuitBreaker::new`] counts failures in a row, as the original design
//! does; [`CircuitBreaker::builder`] sets the rest, and
//! [`HttpClientConfig`](crate::HttpClientConfig) has a field for each.
//!
//! * [`TripPolicy::Consecutive`] (the default): `failure_threshold` failures in
//!   a row. It catches a provider that goes down at once, costs nothing per
//!   call, and needs no traffic to judge. It never trips on a provider that
//!   fails 30% of calls, because each success starts the count again.
//! * [`TripPolicy::FailureRate`]: the share of failed calls over a time window,
//!   once the window holds `minimum_calls` calls. It catches a provider that
//!   fails some of the time, at the cost of a clock read and one atomic update
//!   per call. The minimum keeps a quiet client from opening on two failures
//!   out of three; choose it from the traffic the window sees. Resilience4j
//!   ships 50% over the last 100 calls (a window of calls; here, take a time
//!   window that holds about as many); Microsoft.Extensions.Http.Resilience
//!   10% over 30 s with at least 100 calls, and a 5 s break.
//! * [`TripPolicy::Either`]: both: the consecutive count for an outage, the
//!   rate for a partial one.
//! * [`slow_calls`](CircuitBreakerBuilder::slow_calls): a provider that answers
//!   in 40 s instead of 1 s looks healthy to both policies. A call slower than
//!   the threshold counts as slow even when it succeeds, and the share of slow
//!   calls opens the circuit like the failure rate does (Resilience4j's
//!   default: every call slower than 60 s).
//! * [`OpenBackoff::Exponential`]: a fixed `timeout` probes a provider that
//!   stays down at the same pace forever, and breakers across a fleet that
//!   opened together all probe at the same instant. Exponential backoff doubles
//!   the open time after each failed recovery, up to `max`, and cuts a random
//!   share of up to `jitter` from each, so the fleet's probes spread out.
//!
//! The half-open rules are the same under every policy, and only the calls of
//! the closed circuit count towards a rate: each change of state starts the
//! window again.
//!
//! ```
//! use std::time::Duration;
//! use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
//! use stache_resilience::circuit_breaker::{OpenBackoff, TripPolicy};
//!
//! // Microsoft.Extensions.Http.Resilience's defaults, with consecutive failures
//! // as well and an open time that grows to 5 minutes.
//! let breaker = CircuitBreaker::builder(CircuitBreakerConfig {
//!     timeout: Duration::from_secs(5),
//!     ..Default::default()
//! })
//! .policy(TripPolicy::either(
//!     TripPolicy::Consecutive,
//!     TripPolicy::FailureRate { threshold: 0.1, minimum_calls: 100, window: Duration::from_secs(30) },
//! ))
//! .slow_calls(Duration::from_secs(20), 0.5)
//! .open_backoff(OpenBackoff::Exponential { max: Duration::from_secs(300), jitter: 0.2 })
//! .build()?;
//! assert_eq!(breaker.stats().open_time, Duration::from_secs(5));
//! # Ok::<(), stache_resilience::ConfigError>(())
//! ```
//!
//! # Noticing recovery, and waiting for it
//!
//! By the original design's rule an open circuit stays open for its whole
//! `timeout`, and the first caller after it is the half-open probe: a
//! provider that came back after 3 s of a 60 s open time serves nobody for
//! 57 s. Two settings change that, both off by default and on in the
//! `openai` and `anthropic` presets:
//!
//! * [`CircuitBreakerBuilder::health_probe`] ([`HealthProbe`]): while open,
//!   the breaker checks the service itself every interval and closes the
//!   circuit at the first healthy answer, so calls flow again within about
//!   one interval of the recovery;
//! * [`CircuitBreakerBuilder::wait_while_open`]
//!   ([`BreakerOptions::wait_while_open`]): a call that meets the open
//!   circuit waits for it to close (in `poll_ready`, bounded by the wait and,
//!   in an [`HttpClient`](crate::HttpClient), by the call's deadline) instead
//!   of failing, unless another provider of a
//!   [`ProviderGroup`](crate::failover::ProviderGroup) can take it; a call
//!   whose retries met the circuit opening, and a half-open probe that
//!   failed, wait the same way before their next attempt. The waiters are
//!   let go spread over half a second.
//!
//! Against a simulated outage of 7 s in a steady 20 calls a second, each
//! with 10 s, the `openai` preset serves all 400 calls with 417 attempts,
//! where the original design's values serve about 150 and none of those
//! started after the recovery (benches/README.md).

mod breaker;
mod builder;
mod config;
pub mod future;
mod health;
mod keyed;
mod layer;
mod permit;
mod policy;
mod refusals;
mod rules;
mod service;
mod state;
mod window;

pub use self::breaker::CircuitBreaker;
pub use self::builder::CircuitBreakerBuilder;
pub use self::config::{CircuitBreakerConfig, CircuitStats};
pub use self::health::{CheckFuture, HealthProbe};
pub use self::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService};
pub use self::layer::CircuitBreakerLayer;
pub use self::permit::CallPermit;
pub use self::policy::{BreakerOptions, OpenBackoff, SlowCalls, TripPolicy};
pub use self::service::CircuitBreakerService;
pub use self::state::CircuitState;
pub use crate::error::CircuitOpen;
pub use crate::scope::is_probe;
