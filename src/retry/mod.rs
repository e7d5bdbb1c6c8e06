//! Retries of transient failures with capped, jittered exponential backoff.
//!
//! [`RetryLayer`] re-sends a request when the classifier calls its outcome
//! transient (5xx, 408, 429, transport errors, attempt timeouts: see
//! [`classify`](crate::classify)). Between attempts it sleeps for
//! `min(base_delay × 2^n, max_delay)` with ±50% jitter ([`RetryConfig`]), or for
//! the server's `Retry-After` when that is longer. It never retries:
//!
//! * an outcome the classifier does not call retryable (4xx, success);
//! * a [`CircuitOpen`](crate::circuit_breaker::CircuitOpen), even under a classifier that says so;
//! * a request whose body cannot be copied ([`ReplayRequest`]), or outgrew
//!   [`max_replay_bytes`](RetryConfig::max_replay_bytes) while it was sent
//!   ([`TeeBody`]);
//! * when `Retry-After` asks for more than `max_delay`: the response is returned
//!   at once rather than holding the caller longer than the cap;
//! * when the shared retry budget is spent (retries may add 20% on top of first
//!   attempts, plus 10 retries a second; see [`RetryLayer::budget`]).
//!
//! Each retry logs `attempt {n}/{max} failed: {error}. Retrying in {delay}s` at
//! `INFO` inside the caller's span (so the request ID of
//! [`RequestIdLayer`](crate::RequestIdLayer) is on it); a success on the first
//! attempt logs at `DEBUG`.
//!
//! For calls that are not tower services, use [`with_retry`] or
//! [`with_retry_blocking`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use stache_resilience::classify::HttpClassifier;
//! use stache_resilience::retry::{RetryConfig, RetryLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::default()).classifier(HttpClassifier))
//!     .service_fn(move |_req: http::Request<String>| {
//!         let n = seen.fetch_add(1, Ordering::SeqCst);
//!         let status = if n < 2 { 503 } else { 200 };
//!         async move { Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap()) }
//!     });
//!
//! let res = svc.ready().await.unwrap().call(http::Request::new("{}".to_string())).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```

mod backoff;
mod budget;
pub mod future;
mod layer;
mod replay;
mod service;
mod stats;
mod tee;
mod with_retry;

pub(crate) use self::backoff::DEFAULT_MAX_REPLAY_BYTES;
pub use self::backoff::{Backoff, Jitter, RetryConfig, RetryOptions};
#[cfg(feature = "tonic")]
pub(crate) use self::budget::watch_refused;
pub use self::budget::{RetryBudget, SharedBudget, default_budget};
pub use self::layer::RetryLayer;
#[cfg(feature = "tonic")]
pub(crate) use self::replay::Rebox;
pub(crate) use self::replay::take_mark;
pub use self::replay::{
    Idempotent, Replay, ReplayBody, ReplayRequest, SAFE_TO_REPEAT, method_is_idempotent,
};
pub use self::service::RetryService;
pub use self::stats::RetryStats;
pub use self::tee::TeeBody;
pub use self::with_retry::{with_retry, with_retry_blocking};

#[cfg(test)]
mod tee_tests;
#[cfg(test)]
mod tests;
