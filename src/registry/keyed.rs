//! [`Registry`]: a thread-safe map from a key to a shared stack, each built once.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

/// A thread-safe map from a key to a composed stack, each built once.
///
/// [`get_or_try_init`](Self::get_or_try_init) builds a key's stack the first
/// time it is asked for; callers asking for the same key at the same time wait
/// for that one build, while other keys are built in parallel. A build that
/// fails stores nothing, and the next call tries again. Later calls get a clone
/// of the stored stack: use a `S` whose clones share their state (a tower
/// service with `Clone`, an `HttpClient`, a `tower::buffer::Buffer`), and every
/// caller of a key shares one breaker, pool and budget.
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::registry::Registry;
/// use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
///
/// // One breaker per (provider, model).
/// let breakers: Registry<(&str, &str), CircuitBreaker> = Registry::new();
/// let a = breakers.get_or_try_init(("openai", "gpt-4o"), || {
///     Ok::<_, std::convert::Infallible>(CircuitBreaker::new(CircuitBreakerConfig::default()))
/// })?;
/// let again = breakers.get(&("openai", "gpt-4o")).expect("built once");
/// assert!(a.same_as(&again));
/// assert_eq!(breakers.keys(), [("openai", "gpt-4o")]);
/// # Ok::<(), std::convert::Infallible>(())
/// ```
pub struct Registry<K, S> {
    slots: RwLock<HashMap<K, Arc<Slot<S>>>>,
}

/// One key's stack, and the lock its one build runs under.
struct Slot<S> {
    value: OnceLock<S>,
    building: Mutex<()>,
}

impl<S> Slot<S> {
    fn new() -> Self {
        Slot {
            value: OnceLock::new(),
            building: Mutex::new(()),
        }
    }
}

impl<K, S> Default for Registry<K, S> {
    fn default() -> Self {
        Registry {
            slots: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, S: Clone> Registry<K, S> {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The stack for `key`, built with `build` if there is none yet.
    ///
    /// # Errors
    ///
    /// Whatever `build` returns; nothing is stored then.
    pub fn get_or_try_init<E>(&self, key: K, build: impl FnOnce() -> Result<S, E>) -> Result<S, E> {
        if let Some(stack) = self.get(&key) {
            return Ok(stack);
        }
        let slot = {
            let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
            slots
                .entry(key)
                .or_insert_with(|| Arc::new(Slot::new()))
                .clone()
        };
        // One build per key: the others asking for it wait here, then find it.
        let _building = slot.building.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stack) = slot.value.get() {
            return Ok(stack.clone());
        }
        let stack = build()?;
        Ok(slot.value.get_or_init(|| stack).clone())
    }

    /// The stack for `key`, if one was built.
    pub fn get<Q>(&self, key: &Q) -> Option<S>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots.get(key)?.value.get().cloned()
    }

    /// Stores `stack` for `key`, replacing (and returning) the one there was.
    /// Handles given out before keep the old stack.
    pub fn insert(&self, key: K, stack: S) -> Option<S> {
        let slot = Arc::new(Slot::new());
        let _ = slot.value.set(stack);
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        slots.insert(key, slot)?.value.get().cloned()
    }

    /// The keys that have a stack, in no particular order.
    pub fn keys(&self) -> Vec<K> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .iter()
            .filter(|(_, slot)| slot.value.get().is_some())
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Forgets `key`'s stack and returns it. Handles given out keep working.
    pub fn remove<Q>(&self, key: &Q) -> Option<S>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        slots.remove(key)?.value.get().cloned()
    }

    /// Forgets every stack. Handles given out keep working; the next
    /// `get_or_try_init` of a key builds afresh.
    pub fn reset(&self) {
        self.slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many keys have a stack.
    pub fn len(&self) -> usize {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .values()
            .filter(|slot| slot.value.get().is_some())
            .count()
    }

    /// Whether no key has a stack.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: fmt::Debug, S> fmt::Debug for Registry<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Registry")
            .field(
                "keys",
                &slots
                    .iter()
                    .filter(|(_, slot)| slot.value.get().is_some())
                    .map(|(key, _)| key)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
