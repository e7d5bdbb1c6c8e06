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
//!   success resets it to zero, so only *consecutive* failures open the circuit.
//! * **Open**: calls are refused at once. The circuit does not run a timer task:
//!   the first look after `timeout` has elapsed ([`state`](CircuitBreaker::state),
//!   [`can_attempt`](CircuitBreaker::can_attempt), or a call admitted by
//!   [`CircuitBreakerLayer`] or [`HttpClient`](crate::HttpClient)) moves it to
//!   half-open.
//! * **Half-open**: at most `half_open_max_calls` test calls are let through. Each
//!   admission takes one slot; slots come back only when the period ends (all
//!   probes succeeded: closed; any failed: open again) or, when the breaker is
//!   used through [`CircuitBreakerLayer`] or [`HttpClient`](crate::HttpClient),
//!   when a probe's future is dropped before it finished, or its call ended saying
//!   nothing about the service.
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

mod breaker;
mod config;
pub mod future;
mod gate;
mod keyed;
mod layer;
mod permit;
mod refusals;
mod service;
mod state;

pub use self::breaker::CircuitBreaker;
pub use self::config::{CircuitBreakerConfig, CircuitStats};
pub(crate) use self::gate::Gate;
pub use self::keyed::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService};
pub use self::layer::CircuitBreakerLayer;
pub use self::permit::CallPermit;
pub use self::service::CircuitBreakerService;
pub use self::state::CircuitState;
pub use crate::error::CircuitOpen;
