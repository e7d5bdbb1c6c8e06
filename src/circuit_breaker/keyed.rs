//! One breaker per key: [`KeyedCircuitBreakerLayer`], from
//! [`CircuitBreakerLayer::keyed`](super::CircuitBreakerLayer::keyed).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::breaker::CircuitBreaker;
use super::builder::CircuitBreakerBuilder;
use super::config::{CircuitBreakerConfig, CircuitStats};
use super::future::ResponseFuture;
use super::permit::{Handle, Permit};
use super::state::CircuitState;
use crate::classify::{ClassifyOutcome, ErrorsAreFailures};
use crate::error::{BoxError, ConfigError};
use crate::sync::Arc;

/// The most keys a keyed layer keeps a breaker for, unless set.
const DEFAULT_MAX_KEYS: usize = 1024;

/// One circuit breaker per key of the request (a provider and model, an
/// upstream authority), each made on first use with one config; see
/// [`CircuitBreakerLayer::keyed`](super::CircuitBreakerLayer::keyed).
///
/// At most [`max_keys`](Self::max_keys) breakers are kept (1024 by default):
/// past that, the least recently used *closed* breaker is forgotten. An open or
/// half-open breaker is never forgotten, since that would let calls through to a
/// service known to be failing; if every breaker is open, the map grows past
/// the limit (with a warning) rather than drop one.
///
/// # Readiness
///
/// The key is known only when the request is, so the inner service is made
/// ready before its key's breaker is asked; a refused call then fails at once
/// with [`CircuitOpen`](super::CircuitOpen) without calling it.
pub struct KeyedCircuitBreakerLayer<K, F, C = ErrorsAreFailures> {
    breakers: Arc<Breakers<K>>,
    key: F,
    classifier: C,
}

/// The breakers of one keyed layer, shared by every service it makes.
struct Breakers<K> {
    config: CircuitBreakerConfig,
    /// Each key's breaker is built from this when set (checked to build).
    template: Option<CircuitBreakerBuilder>,
    max_keys: usize,
    map: RwLock<HashMap<K, Entry>>,
    /// A logical clock for "least recently used".
    ticks: AtomicU64,
}

struct Entry {
    handle: Arc<Handle>,
    used: AtomicU64,
}

impl<K: Hash + Eq + Clone> Breakers<K> {
    fn handle(&self, key: K) -> Arc<Handle> {
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = map.get(&key) {
                entry.used.store(tick, Ordering::Relaxed);
                return entry.handle.clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get(&key) {
            return entry.handle.clone();
        }
        if map.len() >= self.max_keys.max(1) {
            Self::evict(&mut map);
        }
        let breaker = match &self.template {
            // Checked when it was set: building again cannot fail, and if it
            // ever did, the plain breaker of the config is the safe fallback.
            Some(template) => template
                .clone()
                .build()
                .unwrap_or_else(|_| CircuitBreaker::new(self.config)),
            None => CircuitBreaker::new(self.config),
        };
        let handle = Arc::new(Handle(breaker));
        map.insert(
            key,
            Entry {
                handle: handle.clone(),
                used: AtomicU64::new(tick),
            },
        );
        handle
    }

    /// Forgets the least recently used closed breaker, if there is one.
    fn evict(map: &mut HashMap<K, Entry>) {
        let oldest = map
            .iter()
            .filter(|(_, e)| e.handle.0.state() == CircuitState::Closed)
            .min_by_key(|(_, e)| e.used.load(Ordering::Relaxed))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => {
                map.remove(&key);
            }
            None => tracing::warn!(
                keys = map.len(),
                "every keyed circuit breaker is open or half-open; keeping them all past max_keys"
            ),
        }
    }
}

impl<K, F> KeyedCircuitBreakerLayer<K, F> {
    pub(super) fn new(config: CircuitBreakerConfig, key: F) -> Self {
        KeyedCircuitBreakerLayer {
            breakers: Arc::new(Breakers {
                config,
                template: None,
                max_keys: DEFAULT_MAX_KEYS,
                map: RwLock::new(HashMap::new()),
                ticks: AtomicU64::new(0),
            }),
            key,
            classifier: ErrorsAreFailures,
        }
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// Replaces the classifier that turns results into breaker outcomes.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, F, C2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key: self.key,
            classifier,
        }
    }

    /// Builds each key's breaker from `builder` (its config, trip policy, slow
    /// calls and open backoff) rather than from the config given to
    /// [`keyed`](super::CircuitBreakerLayer::keyed). Call it before the layer
    /// makes services, as [`max_keys`](Self::max_keys).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
    /// use stache_resilience::circuit_breaker::TripPolicy;
    ///
    /// let per_model = CircuitBreaker::builder(CircuitBreakerConfig::default()).policy(
    ///     TripPolicy::FailureRate { threshold: 0.5, minimum_calls: 20, window: Duration::from_secs(30) },
    /// );
    /// let layer = CircuitBreakerLayer::keyed(CircuitBreakerConfig::default(), |model: &String| model.clone())
    ///     .breakers_from(per_model)?;
    /// # let _ = layer;
    /// # Ok::<(), stache_resilience::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The first setting of `builder` that breaks a rule (see
    /// [`CircuitBreakerBuilder::build`]), checked once here.
    pub fn breakers_from(mut self, builder: CircuitBreakerBuilder) -> Result<Self, ConfigError> {
        let config = builder.config();
        builder.clone().build()?;
        if let Some(breakers) = Arc::get_mut(&mut self.breakers) {
            breakers.config = config;
            breakers.template = Some(builder);
        }
        Ok(self)
    }

    /// Sets the most breakers kept (at least 1). Call it before the layer makes
    /// services: they share the breakers of the layer as it was then.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        if let Some(breakers) = Arc::get_mut(&mut self.breakers) {
            breakers.max_keys = max_keys.max(1);
        }
        self
    }
}

impl<K: Hash + Eq + Clone, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// Every key's breaker state and counts, in no particular order.
    pub fn breakers(&self) -> Vec<(K, CircuitStats)> {
        let map = self
            .breakers
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, e)| (k.clone(), e.handle.0.stats()))
            .collect()
    }

    /// The breaker of `key`, if it has one.
    pub fn breaker(&self, key: &K) -> Option<CircuitBreaker> {
        let map = self
            .breakers
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|e| e.handle.0.clone())
    }
}

impl<K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreakerService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, F, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("config", &self.breakers.config)
            .field("max_keys", &self.breakers.max_keys)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

/// A service guarded by one breaker per key; made by [`KeyedCircuitBreakerLayer`].
///
/// # Errors
///
/// Errors of the inner service are converted into [`BoxError`]; the breaker adds
/// [`CircuitOpen`](super::CircuitOpen).
pub struct KeyedCircuitBreakerService<S, K, F, C = ErrorsAreFailures> {
    inner: S,
    breakers: Arc<Breakers<K>>,
    key: F,
    classifier: C,
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreakerService<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
    C: ClassifyOutcome<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let handle = self.breakers.handle((self.key)(&req));
        match Permit::acquire(&handle) {
            Some(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            None => ResponseFuture::rejected(self.classifier.clone()),
        }
    }
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerService<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerService {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
