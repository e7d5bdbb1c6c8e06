use std::fmt;

use tower_layer::Layer;

use super::breaker::CircuitBreaker;
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
