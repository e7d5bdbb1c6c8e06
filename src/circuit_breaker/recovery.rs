//! How an open circuit closes again without a caller's probe (the health
//! probe's task), and how a caller waits for it (patience).

use std::time::Duration;

use tokio::time::Instant;

use super::{CircuitBreaker, CircuitState, HealthProbe, lock};
use crate::sync::Ordering;

/// Waiters released by a closing circuit go within this much of each other,
/// at random, rather than in the same instant.
const RELEASE_SPREAD: Duration = Duration::from_millis(500);

/// The moment of a waiter let go by the circuit closing: a random part of
/// [`RELEASE_SPREAD`] from now, no later than `until`.
async fn released(until: Instant) {
    let spread = RELEASE_SPREAD.mul_f64(rand::random::<f64>());
    tokio::time::sleep_until((Instant::now() + spread).min(until)).await;
}

/// A weak handle to a breaker, for the health probe's task: the task ends
/// when the last strong one is dropped.
#[cfg(not(loom))]
pub(in crate::circuit_breaker) type WeakBreaker = std::sync::Weak<super::Shared>;

impl CircuitBreaker {
    /// How long a caller may wait for an open circuit to close, if the
    /// breaker lets callers wait.
    #[inline]
    pub(crate) fn patience(&self) -> Option<Duration> {
        self.shared.patience
    }

    /// Takes the right to run the health probe's task; `false` if one runs.
    #[cfg_attr(loom, allow(dead_code))]
    pub(in crate::circuit_breaker) fn claim_probing(&self) -> bool {
        self.shared
            .probing
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    #[cfg(not(loom))]
    pub(in crate::circuit_breaker) fn downgrade(&self) -> WeakBreaker {
        std::sync::Arc::downgrade(&self.shared)
    }

    #[cfg(not(loom))]
    pub(in crate::circuit_breaker) fn upgrade(weak: &WeakBreaker) -> Option<CircuitBreaker> {
        weak.upgrade().map(|shared| CircuitBreaker { shared })
    }

    /// Whether the health probe's task is done: the circuit is closed (or
    /// forced open, which only an operator undoes). Gives up the right to
    /// run it then, unless the circuit opened again meanwhile.
    #[cfg_attr(loom, allow(dead_code))]
    pub(in crate::circuit_breaker) fn settled_closed(&self) -> bool {
        let done = |b: &CircuitBreaker| {
            let word = b.shared.word.load(Ordering::Acquire);
            CircuitState::from_bits(word) == CircuitState::Closed || b.forced_open()
        };
        if !done(self) {
            return false;
        }
        self.shared.probing.store(0, Ordering::Release);
        // A circuit that opened again after the look above, and whose opening
        // found this task still running, is this task's to watch.
        done(self) || !self.claim_probing()
    }

    fn forced_open(&self) -> bool {
        self.shared.reopen_at.load(Ordering::Acquire) == u64::MAX
    }

    /// Closes the circuit because the health probe answered, unless it is
    /// closed already or forced open.
    #[cfg_attr(loom, allow(dead_code))]
    pub(in crate::circuit_breaker) fn close_after_probe(&self) {
        let mut probes = lock(&self.shared.probes);
        let word = self.shared.word.load(Ordering::Acquire);
        if CircuitState::from_bits(word) == CircuitState::Closed || self.forced_open() {
            return;
        }
        let t = self.transition(&mut probes, word, CircuitState::Closed);
        self.shared.reopen_at.store(0, Ordering::Release);
        drop(probes);
        tracing::info!(
            from = t.from.as_str(),
            "circuit breaker: the health probe answered"
        );
        crate::circuit_breaker::state::announce(t);
    }

    /// When an open circuit's recovery time comes (its next caller is then a
    /// half-open probe); `None` while not open, or forced open.
    fn recovery_at(&self) -> Option<Instant> {
        let word = self.shared.word.load(Ordering::Acquire);
        if CircuitState::from_bits(word) != CircuitState::Open || self.forced_open() {
            return None;
        }
        let at = self.shared.reopen_at.load(Ordering::Acquire);
        self.shared.epoch.checked_add(Duration::from_nanos(at))
    }

    /// Whether a call asking now would be admitted as far as the state says
    /// (closed, half-open, or open past its recovery time), without taking
    /// a slot or counting a refusal.
    fn may_admit(&self) -> bool {
        self.recovery_at().is_none_or(|at| Instant::now() >= at)
    }

    /// Waits until the circuit may admit a call, or until `until`: `true`
    /// if it may. Woken by every change of state and by the recovery time;
    /// a caller released by a circuit that closed waits a random moment of
    /// up to half a second more, so that the waiters do not all come back at
    /// once.
    ///
    /// With `after_change`, the first look waits for the state to change: a
    /// caller that found every half-open slot taken waits for the probes'
    /// verdict rather than asking again at once.
    pub(crate) async fn wait_admissible(&self, until: Instant, after_change: bool) -> bool {
        let mut states = self.subscribe();
        // A probe's verdict that came before this look counts as the change.
        let mut look = !after_change || *states.borrow_and_update() != CircuitState::HalfOpen;
        loop {
            if look && self.may_admit() {
                return true;
            }
            look = true;
            let now = Instant::now();
            if now >= until {
                return false;
            }
            let wake = self.recovery_at().map_or(until, |at| at.min(until));
            let changed = tokio::time::timeout_at(wake, states.changed()).await;
            if matches!(changed, Ok(Ok(()))) && *states.borrow_and_update() == CircuitState::Closed
            {
                released(until).await;
            } else if matches!(changed, Ok(Err(_))) {
                // The breaker is gone: nothing will change any more.
                return self.may_admit();
            }
        }
    }

    /// Waits until the circuit is closed or its recovery time has come, or
    /// until `until`: `true` unless the time ran out. A caller released by
    /// the circuit closing waits a random moment of up to half a second more,
    /// as in [`wait_admissible`](Self::wait_admissible). The recovery time
    /// lets a caller whose retries wait go on as a new caller would (as a
    /// probe) when nothing closes the circuit before it.
    pub(crate) async fn wait_closed(&self, until: Instant) -> bool {
        let mut states = self.subscribe();
        loop {
            let word = self.shared.word.load(Ordering::Acquire);
            let due = self.recovery_at().is_some_and(|at| Instant::now() >= at);
            if CircuitState::from_bits(word) == CircuitState::Closed || due {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            let wake = self.recovery_at().map_or(until, |at| at.min(until));
            match tokio::time::timeout_at(wake, states.changed()).await {
                Ok(Ok(())) if *states.borrow_and_update() == CircuitState::Closed => {
                    released(until).await;
                    return true;
                }
                // The breaker is gone: nothing will change any more.
                Ok(Err(_)) => return self.may_admit(),
                Ok(Ok(())) | Err(_) => {}
            }
        }
    }
}

/// Starts the probe's task for `breaker`, whose circuit just opened, unless
/// one runs already or there is no runtime to run it on.
#[cfg(not(loom))]
pub(super) fn start(breaker: &CircuitBreaker, probe: &HealthProbe) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if !breaker.claim_probing() {
        return;
    }
    let weak = breaker.downgrade();
    let (interval, timeout, check) = probe.parts();
    let check = check.clone();
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(breaker) = CircuitBreaker::upgrade(&weak) else {
                return;
            };
            if breaker.settled_closed() {
                return;
            }
            let healthy = tokio::time::timeout(timeout, check())
                .await
                .unwrap_or(false);
            if healthy {
                breaker.close_after_probe();
            }
            if breaker.settled_closed() {
                return;
            }
        }
    });
}

#[cfg(loom)]
pub(super) fn start(_breaker: &CircuitBreaker, _probe: &HealthProbe) {}
