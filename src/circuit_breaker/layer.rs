use std::fmt;

use tower_layer::Layer;

use super::breaker::CircuitBreaker;
use super::config::CircuitBreakerConfig;
use super::keyed::KeyedCircuitBreakerLayer;
use super::service::CircuitBreakerService;
use crate::classify::ErrorsAreFailures;

/// Applies a shared [`CircuitBreaker`] to a service.
///
/// Every service this layer makes, and every clone of those, shares the breaker
/// it was built with, so one provider has one circuit however many handles to it
/// exist. See the [module documentation](super) for the rules and an example.
///
/// The classifier `C` decides what an outcome means: by default
/// ([`ErrorsAreFailures`]) an `Err` is a failure and an `Ok` a success; use
/// [`HttpClassifier`](crate::classify::HttpClassifier) for HTTP responses, where a
/// 503 is a failure and a 404 is not.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAreFailures> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer over `breaker` with the default classifier.
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: ErrorsAreFailures,
        }
    }

    /// A layer with one breaker per key: `key` picks the key of each request
    /// (a provider and model, an upstream authority), and each key's breaker is
    /// made with `config` on first use. See [`KeyedCircuitBreakerLayer`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use stache_resilience::{CircuitBreakerConfig, CircuitBreakerLayer};
    /// use stache_resilience::circuit_breaker::CircuitState;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// let config = CircuitBreakerConfig { failure_threshold: 1, ..Default::default() };
    /// let layer = CircuitBreakerLayer::keyed(config, |model: &&'static str| model.to_string());
    /// let mut svc = layer.layer(tower::service_fn(|model: &'static str| async move {
    ///     if model == "a" { Err(std::io::Error::other("model a is down")) } else { Ok(()) }
    /// }));
    /// assert!(svc.ready().await.unwrap().call("a").await.is_err());
    /// assert!(svc.ready().await.unwrap().call("b").await.is_ok());
    /// assert_eq!(layer.breaker(&"a".to_string()).unwrap().state(), CircuitState::Open);
    /// assert_eq!(layer.breaker(&"b".to_string()).unwrap().state(), CircuitState::Closed);
    /// # }
    /// ```
    pub fn keyed<Req, K, F>(config: CircuitBreakerConfig, key: F) -> KeyedCircuitBreakerLayer<K, F>
    where
        F: Fn(&Req) -> K,
    {
        KeyedCircuitBreakerLayer::new(config, key)
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Replaces the classifier that turns results into breaker outcomes.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker this layer shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker)
            .field("classifier", &self.classifier)
            .finish()
    }
}
