//! The by-hand and operator side of [`CircuitBreaker`]: permits that cannot be
//! forgotten, and forcing the circuit open or closed.

use super::{CircuitBreaker, CircuitState, STATE_MASK, Verdict, lock};
use crate::circuit_breaker::permit::CallPermit;
use crate::sync::Ordering;

impl CircuitBreaker {
    /// Admits a call and returns its permit, or `None` while the circuit refuses
    /// calls — the way to use the breaker by hand.
    ///
    /// Record the outcome with [`CallPermit::success`] or
    /// [`CallPermit::failure`]; a permit dropped without either (a panic, a
    /// cancelled future, a result that says nothing about the service) records
    /// nothing and gives its half-open slot back at once.
    ///
    /// ```
    /// use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig { failure_threshold: 1, ..Default::default() });
    /// let permit = breaker.try_acquire().expect("a closed circuit admits");
    /// permit.failure(); // opens the circuit
    /// assert!(breaker.try_acquire().is_none());
    /// ```
    pub fn try_acquire(&self) -> Option<CallPermit> {
        self.admit()
            .map(|ticket| CallPermit::new(self.clone(), ticket))
    }

    /// Opens the circuit and keeps it open, refusing every call, until
    /// [`reset`](Self::reset): for an operator who knows the provider is down, or
    /// wants to drain it. Emits one `WARN` event.
    pub fn force_open(&self) {
        let mut probes = lock(&self.shared.probes);
        let word = self.shared.word.load(Ordering::Acquire);
        let transition = (CircuitState::from_bits(word) != CircuitState::Open)
            .then(|| self.transition(&mut probes, word, CircuitState::Open));
        self.shared.reopen_at.store(u64::MAX, Ordering::Release);
        let generation = self.shared.word.load(Ordering::Acquire) >> 2;
        drop(probes);
        let from = transition.as_ref().map_or("open", |t| t.from.as_str());
        tracing::warn!(
            from,
            to = "open",
            generation,
            forced = true,
            "circuit breaker forced open"
        );
    }

    /// Closes the circuit and zeroes its counts, whatever its state (a forced
    /// open included). Subscribers see the new state. Emits one `INFO` event.
    pub fn reset(&self) {
        let mut probes = lock(&self.shared.probes);
        let word = self.shared.word.load(Ordering::Acquire);
        let t = self.transition(&mut probes, word, CircuitState::Closed);
        self.shared.reopen_at.store(0, Ordering::Release);
        drop(probes);
        tracing::info!(
            from = t.from.as_str(),
            to = "closed",
            generation = t.generation,
            "circuit breaker reset"
        );
    }

    /// Records a successful call.
    ///
    /// Closed: resets the consecutive-failure count. Half-open: counts one
    /// successful test; the last one needed closes the circuit. Open: ignored (a
    /// late answer from before the circuit opened).
    pub fn record_success(&self) {
        // The period before the outcome: one that closes a half-open circuit
        // does not count in the new closed period.
        let generation = self.shared.word.load(Ordering::Acquire) & !STATE_MASK;
        self.on_success(None);
        if let Some(rules) = &self.shared.rules {
            self.observe(rules, Some(generation), 0, Verdict::Success);
        }
    }

    /// Records a failed call.
    ///
    /// Closed: adds one to the consecutive-failure count and opens the circuit when
    /// it reaches the threshold (or when a rate rule of the policy says so). Half-open: opens the circuit again and restarts the
    /// recovery timeout. Open: counted in the stats only.
    pub fn record_failure(&self) {
        // The period before the outcome: one that closes a half-open circuit
        // does not count in the new closed period.
        let generation = self.shared.word.load(Ordering::Acquire) & !STATE_MASK;
        self.on_failure(None);
        if let Some(rules) = &self.shared.rules {
            self.observe(rules, Some(generation), 0, Verdict::Failure);
        }
    }
}
