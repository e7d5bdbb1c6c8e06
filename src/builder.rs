//! [`ServiceBuilderExt`]: this crate's layers as `ServiceBuilder` methods.

use std::time::Duration;

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use crate::request_id::RequestIdLayer;
use crate::retry::{RetryConfig, RetryLayer};
use crate::timeout::TimeoutLayer;

mod sealed {
    pub trait Sealed<L> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds this crate's layers to [`ServiceBuilder`] so a stack reads top to bottom:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use stache_resilience::{classify::HttpClassifier, CircuitBreaker, RetryConfig, ServiceBuilderExt};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// let breaker = CircuitBreaker::default();
/// let mut svc = ServiceBuilder::new()
///     .request_id()
///     .circuit_breaker_with(breaker.clone(), HttpClassifier)
///     .resilient_retry_with(RetryConfig::default(), HttpClassifier)
///     .attempt_timeout(Duration::from_secs(30))
///     .service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::io::Error>(http::Response::new("ok"))
///     });
/// let res = svc.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(*res.body(), "ok");
/// # }
/// ```
///
/// # Why not `.retry(config)` and `.timeout(d)`
///
/// Tower's own `ServiceBuilder` has inherent `retry` and `timeout` methods when
/// its `retry` and `timeout` features are on (this crate turns on `retry`, and
/// most applications get both through feature unification). An inherent method
/// always wins over a trait method of the same name, so an extension method
/// named `retry` or `timeout` would never be called; these are named
/// [`resilient_retry`](Self::resilient_retry) and
/// [`attempt_timeout`](Self::attempt_timeout) instead.
///
/// The trait is sealed: it is implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Tags requests with an ID, a header and a span; see [`RequestIdLayer`].
    fn request_id(self) -> ServiceBuilder<Stack<RequestIdLayer, L>>;

    /// Guards the service with `breaker`, counting every `Err` as a failure; see
    /// [`CircuitBreakerLayer`].
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Guards the service with `breaker`, with `classifier` deciding what a
    /// failure is (use [`HttpClassifier`](crate::classify::HttpClassifier) over an
    /// HTTP client, so that a 503 counts and a 404 does not).
    fn circuit_breaker_with<C>(
        self,
        breaker: CircuitBreaker,
        classifier: C,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Retries every `Err` with backoff, `Retry-After` and the default budget; a
    /// request that is not idempotent only when the server provably did not act
    /// on it (see [`Replay`](crate::retry::Replay)). See [`RetryLayer`].
    fn resilient_retry(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>>;

    /// Retries what `classifier` calls transient; see [`RetryLayer`].
    fn resilient_retry_with<C>(
        self,
        config: RetryConfig,
        classifier: C,
    ) -> ServiceBuilder<Stack<RetryLayer<C>, L>>;

    /// Bounds each call by `default`, unless the request carries a
    /// [`RequestTimeout`](crate::timeout::RequestTimeout); see [`TimeoutLayer`].
    fn attempt_timeout(self, default: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn request_id(self) -> ServiceBuilder<Stack<RequestIdLayer, L>> {
        self.layer(RequestIdLayer::new())
    }

    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    fn circuit_breaker_with<C>(
        self,
        breaker: CircuitBreaker,
        classifier: C,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(CircuitBreakerLayer::new(breaker).classifier(classifier))
    }

    fn resilient_retry(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(config))
    }

    fn resilient_retry_with<C>(
        self,
        config: RetryConfig,
        classifier: C,
    ) -> ServiceBuilder<Stack<RetryLayer<C>, L>> {
        self.layer(RetryLayer::new(config).classifier(classifier))
    }

    fn attempt_timeout(self, default: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new(default))
    }
}
