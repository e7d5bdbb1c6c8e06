//! One circuit breaker per model, for a client with
//! [`breaker_per_model`](super::HttpClientConfig::breaker_per_model): the
//! client's stack, topped with the model's own breaker.
//!
//! Providers fail per model: one model overloaded, or withdrawn, while the
//! others answer. A breaker per model keeps the calls to the healthy ones
//! flowing. Each model's breaker is the client's breaker as configured (its
//! policy, open backoff, attempt counting, wait while open and health
//! check), made on the model's first call; the layers below it (retries,
//! rate limit, pool, connections) are the client's, shared.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder};
use crate::provider::Model;

/// The most models a client keeps a breaker for; the calls for any more go
/// through the client's own breaker (model names come from request bodies,
/// and the map must not grow without bound).
const MAX_MODELS: usize = 1_024;

/// The models' stacks (`S`, the client's stack type), each made on its
/// model's first call.
pub(super) struct ModelStacks<S> {
    /// How each model's breaker is made: the client's, unnamed.
    template: CircuitBreakerBuilder,
    /// The client's name, which each model's breaker reports under, with
    /// the model's.
    label: std::sync::Arc<str>,
    map: RwLock<HashMap<Model, (S, CircuitBreaker)>>,
}

impl<S: Clone> ModelStacks<S> {
    pub(super) fn new(template: CircuitBreakerBuilder, label: std::sync::Arc<str>) -> Self {
        ModelStacks {
            template,
            label,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// A clone of `model`'s stack, made by `make` from the model's new
    /// breaker on its first call; `None` past [`MAX_MODELS`].
    pub(super) fn stack(&self, model: &Model, make: impl FnOnce(CircuitBreaker) -> S) -> Option<S> {
        if let Some((stack, _)) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
        {
            return Some(stack.clone());
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((stack, _)) = map.get(model) {
            return Some(stack.clone());
        }
        if map.len() >= MAX_MODELS {
            return None;
        }
        // The template was built once when the client was: it builds again.
        let breaker = self
            .template
            .clone()
            .provider(format!("{}/{}", self.label, model.as_str()))
            .build()
            .ok()?;
        let stack = make(breaker.clone());
        map.insert(model.clone(), (stack.clone(), breaker));
        Some(stack)
    }

    /// `model`'s breaker, once it has had a call.
    pub(super) fn breaker(&self, model: &str) -> Option<CircuitBreaker> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&Model::new(model))
            .map(|(_, breaker)| breaker.clone())
    }
}
