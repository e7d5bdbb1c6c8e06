//! The per-model state of a [`RateLimiter`] made
//! [`per_model`](RateLimiter::per_model): a gate and a pace of its own for
//! each [`Model`], so that a `429` for one model does not hold back calls to
//! another.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use std::sync::atomic::Ordering;
use tokio::time::Instant;

use super::{Models, RateLimitStats, RateLimiter, lock};
use crate::provider::Model;

/// The most models a limiter keeps apart. A call for a model past them
/// shares the limiter's own gate and pace: the names come from request
/// bodies, and the map must not grow without bound.
pub(super) const MAX_MODELS: usize = 1_024;

impl Models {
    /// The limiter of `model`, made like `parent` (its longest wait and gate,
    /// its name) with neither configured limits nor a cold-start window:
    /// those stay the parent's, counted for every model together.
    fn get(&self, parent: &RateLimiter, model: &Model) -> Option<RateLimiter> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(limiter) = map.get(model) {
            return Some(limiter.clone());
        }
        if map.len() >= MAX_MODELS {
            return None;
        }
        let limiter = RateLimiter::new();
        let (from, to) = (parent.inner(), limiter.inner());
        let copy = |from: &std::sync::atomic::AtomicU64, to: &std::sync::atomic::AtomicU64| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        copy(&from.max_wait_ms, &to.max_wait_ms);
        copy(&from.max_gate_ms, &to.max_gate_ms);
        if let Some(meter) = from.meter.get() {
            let _ = to.meter.set(meter.clone());
        }
        let _ = to.account.set(Arc::downgrade(&parent.inner));
        map.insert(model.clone(), limiter.clone());
        Some(limiter)
    }

    /// The throttled answers every model's limiter has seen.
    pub(in crate::rate_limit) fn throttled(&self) -> u64 {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .map(|limiter| limiter.inner().throttled.load(Ordering::Relaxed))
            .sum()
    }
}

impl RateLimiter {
    /// Keeps the gate, the learned pace and what the provider's headers say
    /// apart for each [`Model`] a request names (in its extensions): a `429`
    /// for one model then holds back calls to that model alone, as OpenAI
    /// and Anthropic keep their limits per model. A request without a
    /// `Model` uses the limiter's own. The configured limits
    /// ([`RateLimit`](super::RateLimit), fleet mode) and the cold-start
    /// window stay shared by every model: they are the application's, not
    /// the provider's. At most 1,024 models are kept apart; the calls for
    /// any more share the limiter's own state. Applies to every clone.
    ///
    /// A limiter without it (the default) never looks at the model.
    pub fn per_model(self) -> Self {
        let _ = self.inner().models.set(Models::default());
        self
    }

    /// The limiter that keeps the gate and pace of a request with
    /// `extensions`, if it is not this one: only for a limiter made
    /// [`per_model`](Self::per_model), and a request that names a model.
    #[inline]
    pub(in crate::rate_limit) fn for_request(
        &self,
        extensions: &http::Extensions,
    ) -> Option<RateLimiter> {
        let models = self.inner().models.get()?;
        models.get(self, extensions.get::<Model>()?)
    }

    /// The limiter whose gate holds back every model: the one a model's
    /// limiter belongs to, or this one.
    pub(in crate::rate_limit) fn account(&self) -> Option<RateLimiter> {
        let inner = self.inner.account.get()?.upgrade()?;
        Some(RateLimiter { inner })
    }

    /// Cools the provider down after an answer whose
    /// [`ProviderError`](crate::provider::ProviderError) is the account's (a
    /// spent quota, a refused key): the account's gate
    /// closes, for every model, for the longest gate; the next calls are
    /// refused at once (their wait is past the longest wait), then one asks
    /// again.
    #[cold]
    #[inline(never)]
    pub(in crate::rate_limit) fn cool_down(&self, kind: crate::provider::ProviderErrorKind) {
        let account = self.account();
        let inner = account.as_ref().unwrap_or(self).inner();
        let cool = Duration::from_millis(inner.max_gate_ms.load(Ordering::Relaxed));
        let now = Instant::now();
        let mut state = lock(&inner.state);
        // Said once, not by every caller that met the same spent quota.
        let told = state.gate.is_some_and(|gate| gate >= now + cool / 2);
        state.close(now, cool);
        state.cooled = Some((now + cool, kind));
        drop(state);
        inner.engaged.store(true, Ordering::Relaxed);
        if !told {
            tracing::warn!(
                cool_down_secs = cool.as_secs_f64(),
                error = kind.as_str(),
                "the provider refused the account ({kind}): its calls are refused for {:.0}s, sending nothing, then one asks again",
                cool.as_secs_f64()
            );
        }
    }

    /// The counters, pace and gate of `model`'s own state, for a limiter
    /// made [`per_model`](Self::per_model) that has seen a call for it. Its
    /// `waited` and `refused` stay in the limiter's own stats, which count
    /// every model's.
    pub fn model_stats(&self, model: &str) -> Option<RateLimitStats> {
        let models = self.inner().models.get()?;
        let map = models.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&Model::new(model)).map(RateLimiter::stats)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_MODELS, Model, RateLimiter};

    fn naming(model: &str) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(Model::new(model));
        extensions
    }

    #[test]
    fn models_are_kept_apart_up_to_the_bound_then_share_the_limiters_own() {
        let plain = RateLimiter::new();
        assert!(plain.for_request(&naming("a")).is_none(), "not per model");
        let limiter = RateLimiter::new().per_model();
        assert!(limiter.for_request(&http::Extensions::new()).is_none());
        let first = limiter.for_request(&naming("m0")).unwrap();
        let again = limiter.for_request(&naming("m0")).unwrap();
        assert!(std::ptr::eq(first.inner(), again.inner()));
        for i in 1..MAX_MODELS {
            assert!(limiter.for_request(&naming(&format!("m{i}"))).is_some());
        }
        assert!(limiter.for_request(&naming("one too many")).is_none());
        assert!(
            limiter.for_request(&naming("m7")).is_some(),
            "known models stay"
        );
    }
}
