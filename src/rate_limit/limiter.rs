//! [`RateLimiter`]: the gate, the learned pace and the configured limits of one
//! provider, shared by every clone.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::config::RateLimit;
#[cfg(feature = "redis")]
use super::fleet::{Fleet, FleetStats, FleetStore};
use super::gcra::Buckets;
use super::headers::spent_for;
use super::pacer::{Pacer, Released};
use super::window::{ColdStart, Window};
use crate::error::{ConfigError, RateLimited};
use crate::retry_after::headers_retry_after;
use crate::telemetry::{self, Meter};

/// The longest any wait can be: a day.
pub(super) const MAX_GATE: Duration = Duration::from_secs(86_400);
/// The longest a gate stays closed by default, whatever a provider asks: five
/// minutes. One `Retry-After: 86400` must not stop a client for a day; after
/// this, the next call asks the provider again.
const DEFAULT_MAX_GATE: Duration = Duration::from_secs(300);
/// The longest wait of a limiter that was not given one.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);
/// The most a caller released by a gate (without a pace) waits after it, to
/// spread a crowd: a tenth of the wait, at most this.
const MAX_SPREAD: Duration = Duration::from_millis(500);

/// One provider's rate limiting, shared by every clone: what
/// [`RateLimitLayer`](super::RateLimitLayer) and
/// [`HttpClient`](crate::HttpClient) wait on, and what their answers teach.
/// See the [module documentation](super).
///
/// Clones share one state: hand a clone to every service (and every process
/// thread) that calls the same provider with the same key.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// Whether a call must look at the state at all: a limit is configured,
    /// the pace is on, or a gate is closed. Read alone on every call.
    pub(super) engaged: AtomicBool,
    pub(super) state: Mutex<State>,
    /// The line of paced callers, first come first served (tokio's
    /// semaphore is fair): one permit.
    pub(super) line: Arc<tokio::sync::Semaphore>,
    /// Callers waiting to enter the line.
    pub(super) queued: AtomicUsize,
    pub(super) max_wait_ms: AtomicU64,
    /// The longest the gate stays closed at a time.
    pub(super) max_gate_ms: AtomicU64,
    pub(super) limit: Option<RateLimit>,
    /// The configured limits kept in Redis (then `buckets` is `None`).
    #[cfg(feature = "redis")]
    pub(super) fleet: Option<FleetStore>,
    pub(super) waited: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) throttled: AtomicU64,
    /// Where waits, refusals and throttled answers are reported, once named.
    pub(super) meter: std::sync::OnceLock<Meter>,
    /// The cold-start window, if the limiter has one.
    pub(super) window: std::sync::OnceLock<Arc<Window>>,
    /// Each model's gate and pace, for a limiter made `per_model`.
    pub(super) models: std::sync::OnceLock<Models>,
    /// For a model's limiter: the limiter it belongs to, whose gate holds
    /// back every model (a spent quota is the account's).
    pub(super) account: std::sync::OnceLock<std::sync::Weak<Inner>>,
}

pub(super) struct State {
    pub(super) buckets: Option<Buckets>,
    /// No attempt goes before this instant.
    pub(super) gate: Option<Instant>,
    pub(super) pacer: Pacer,
    /// Until when the provider cools down after refusing the account, and
    /// why: what a refusal meanwhile says.
    pub(super) cooled: Option<(Instant, crate::provider::ProviderErrorKind)>,
}

/// What a call's turn left for its answer to report: whether the pace
/// released it, and how long after the attempt before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ticket {
    released: Option<Released>,
    /// The tokens the call reserved from the configured limits, to settle
    /// or give back.
    pub(super) tokens: u32,
}

impl RateLimiter {
    /// The limiter that keeps the configured limits this one's calls draw
    /// on: the one it was made from, for a model's, else itself.
    pub(super) fn owner(&self) -> RateLimiter {
        match self.inner.account.get().and_then(std::sync::Weak::upgrade) {
            Some(inner) => RateLimiter { inner },
            None => self.clone(),
        }
    }
}

impl Ticket {
    /// The ticket of a call the pace let go (`released`), or not.
    pub(super) fn released(released: Option<Released>) -> Ticket {
        Ticket {
            released,
            tokens: 0,
        }
    }
}

/// One limiter per model, made on the model's first call, for a limiter made
/// [`per_model`](RateLimiter::per_model) (the logic is in `models.rs`).
#[derive(Default)]
pub(super) struct Models {
    map: Mutex<std::collections::HashMap<crate::provider::Model, RateLimiter>>,
}

/// Counters and the current state of a [`RateLimiter`]; from
/// [`RateLimiter::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Calls that waited for their turn.
    pub waited: u64,
    /// Calls refused because their wait would have passed their deadline (or
    /// the longest wait); nothing was sent for them.
    pub refused: u64,
    /// Throttled answers seen: 429s, and 503s that asked for a wait.
    pub throttled: u64,
    /// The spacing of attempts learned from the provider, while the pace is on.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs::option"))]
    pub pace: Option<Duration>,
    /// How long the gate stays closed from now, if it is.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs::option"))]
    pub gate_closed_for: Option<Duration>,
    /// The cold-start window, if the limiter has one: attempts it lets out
    /// at once now, and attempts holding a place in it.
    pub window: Option<(u32, u32)>,
    /// How the shared budget of a [`Fleet`](super::Fleet) is doing, for a
    /// limiter in fleet mode.
    #[cfg(feature = "redis")]
    pub fleet: Option<FleetStats>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    /// A limiter with no configured limit: herd control alone. Until a
    /// provider throttles, a call pays one atomic load here.
    pub fn new() -> Self {
        RateLimiter::build(None)
    }

    /// A limiter that also keeps calls within `limit`.
    ///
    /// # Errors
    ///
    /// The rule `limit` breaks ([`RateLimit::validate`]).
    pub fn with_limit(limit: RateLimit) -> Result<Self, ConfigError> {
        limit.validate()?;
        Ok(RateLimiter::build(Some(limit)))
    }

    /// A limiter that keeps calls within `limit` together with every other
    /// process whose limiter names the same `provider` and `api_key` (feature
    /// `redis`): the budget is kept in Redis, under the provider's name (or
    /// [`Fleet::namespace`]) and a hash of `api_key`, and each process falls
    /// back to `limit / fleet_size` while Redis does not answer. See the
    /// [module documentation](super#fleet-mode-feature-redis).
    ///
    /// Connects to Redis on the first call, not here (so this needs no
    /// runtime).
    ///
    /// # Errors
    ///
    /// The rule `limit` or `fleet` breaks ([`RateLimit::validate`],
    /// [`Fleet::validate`]).
    #[cfg(feature = "redis")]
    pub fn with_fleet(
        limit: RateLimit,
        fleet: Fleet,
        provider: &str,
        api_key: &str,
    ) -> Result<Self, ConfigError> {
        Self::fleet_keyed(limit, fleet, provider, api_key.as_bytes())
    }

    /// [`with_fleet`](Self::with_fleet) with the key's bytes as the client
    /// finds them (its credential headers).
    #[cfg(feature = "redis")]
    pub(crate) fn fleet_keyed(
        limit: RateLimit,
        fleet: Fleet,
        provider: &str,
        secret: &[u8],
    ) -> Result<Self, ConfigError> {
        limit.validate()?;
        let store = FleetStore::new(limit, fleet, provider, secret)?;
        let mut inner = Inner::new(Some(limit));
        inner.fleet = Some(store);
        // The limits are Redis's to keep now (and the store's fallback's).
        inner
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .buckets = None;
        Ok(RateLimiter {
            inner: Arc::new(inner),
        })
    }

    /// The Redis keys a fleet-mode limiter keeps its budget under.
    #[cfg(feature = "redis")]
    pub fn fleet_keys(&self) -> Option<&[String; 2]> {
        self.inner.fleet.as_ref().map(FleetStore::keys)
    }

    fn build(limit: Option<RateLimit>) -> Self {
        RateLimiter {
            inner: Arc::new(Inner::new(limit)),
        }
    }

    /// Sets the longest a call without a deadline waits for its turn (10 s by
    /// default); a call whose known wait is longer is refused at once with
    /// [`RateLimited`]. Applies to every clone. A call with a
    /// [`RequestDeadline`](crate::timeout::RequestDeadline) waits until then.
    pub fn with_max_wait(self, wait: Duration) -> Self {
        self.inner
            .max_wait_ms
            .store(millis(wait), Ordering::Relaxed);
        self
    }

    /// Sets the longest the gate stays closed at a time, whatever a provider
    /// asks (5 minutes by default; at most a day): a longer `Retry-After`, or
    /// a quota whose reset is further away, closes it this long, then the next
    /// call asks the provider again. Applies to every clone.
    pub fn with_max_gate(self, gate: Duration) -> Self {
        self.inner
            .max_gate_ms
            .store(millis(gate.min(MAX_GATE)), Ordering::Relaxed);
        self
    }

    /// Lets few attempts out at once while the provider's limit is unknown,
    /// and more as answers succeed (see [`ColdStart`] and the [module
    /// documentation](super#cold-start)): a cold burst of N callers against
    /// a rate limit then costs close to N attempts. A value that breaks
    /// [`ColdStart::validate`] is raised to the nearest that does not. The
    /// first window set stays; applies to every clone. Without it (the
    /// default), nothing is held back before the first throttled answer.
    pub fn with_cold_start(self, cold: ColdStart) -> Self {
        let initial = cold.initial.max(1);
        let cold = ColdStart::new(initial, cold.max.clamp(initial, 1_000_000));
        if self.inner.window.set(Arc::new(Window::new(cold))).is_ok() {
            self.inner.engaged.store(true, Ordering::Relaxed);
        }
        self
    }

    /// The cold-start window, if there is one.
    #[inline]
    pub(super) fn window(&self) -> Option<&Arc<Window>> {
        self.inner.window.get()
    }

    /// Names the limiter: with the feature `metrics`, its waits, refusals and
    /// the throttled answers it sees are reported labelled `provider = name`
    /// (see [`telemetry`](crate::telemetry)). Applies to every clone; the
    /// first name given stays.
    pub fn provider(self, name: impl Into<Arc<str>>) -> Self {
        let _ = self.inner.meter.set(Meter::named(name.into()));
        self
    }

    /// The configured limit, if any.
    pub fn limit(&self) -> Option<&RateLimit> {
        self.inner.limit.as_ref()
    }

    /// What every clone shares.
    pub(super) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Whether a call has to look at the limiter's state (a limit, a pace or
    /// a gate); when not, it goes at once.
    #[inline]
    pub(crate) fn engaged(&self) -> bool {
        self.inner.engaged.load(Ordering::Relaxed)
    }

    /// Reports an answer of the provider that no permit was taken for: a
    /// throttled one closes the gate and starts the pace, and the provider's
    /// rate-limit headers are read (see the module documentation). The hook
    /// for a classifier or client of your own.
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap) {
        self.report(Ticket::default(), status, headers);
    }

    /// Counters, and the pace and gate as they are now.
    pub fn stats(&self) -> RateLimitStats {
        let inner = &*self.inner;
        let (pace, gate_closed_for) = {
            let state = lock(&inner.state);
            let now = Instant::now();
            let gate = state
                .gate
                .and_then(|g| g.checked_duration_since(now))
                .filter(|d| !d.is_zero());
            (state.pacer.interval(), gate)
        };
        RateLimitStats {
            waited: inner.waited.load(Ordering::Relaxed),
            refused: inner.refused.load(Ordering::Relaxed),
            throttled: inner.throttled.load(Ordering::Relaxed)
                + inner.models.get().map_or(0, Models::throttled),
            pace,
            gate_closed_for,
            window: inner.window.get().map(|w| w.snapshot()),
            #[cfg(feature = "redis")]
            fleet: inner.fleet.as_ref().map(FleetStore::stats),
        }
    }

    /// Readiness while the gate is closed: Pending until it opens (plus a
    /// spread of a tenth of the wait), with `timer` kept between polls; Ready
    /// at once when it is open, or opens later than the longest wait (the
    /// call is then refused in its turn).
    pub(crate) fn poll_gate(
        &self,
        timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let now = Instant::now();
        if timer.is_none() {
            let gate = lock(&self.inner.state).gate.filter(|g| *g > now);
            let max_wait = Duration::from_millis(self.inner.max_wait_ms.load(Ordering::Relaxed));
            match gate {
                Some(gate) if gate - now <= max_wait => {
                    *timer = Some(Box::pin(tokio::time::sleep_until(spread(now, gate))));
                }
                _ => return std::task::Poll::Ready(()),
            }
        }
        if let Some(sleep) = timer {
            std::task::ready!(sleep.as_mut().poll(cx));
            let inner = &*self.inner;
            inner.count(&inner.waited, telemetry::RATE_LIMIT_WAITS);
        }
        *timer = None;
        std::task::Poll::Ready(())
    }

    /// The refusal of a call that must start by `deadline`, if the gate
    /// opens after it: for a caller that waits for readiness, which cannot
    /// know the call's deadline, and should not wait in vain.
    pub(crate) fn refuse_past(&self, deadline: Instant) -> Option<RateLimited> {
        if !self.engaged() {
            return None;
        }
        let now = Instant::now();
        let (gate, cooled) = {
            let state = lock(&self.inner.state);
            (state.gate.filter(|g| *g > deadline)?, state.cooled)
        };
        let inner = &*self.inner;
        inner.count(&inner.refused, telemetry::RATE_LIMIT_REFUSALS);
        let refused = RateLimited::new(Some(gate - now), deadline.saturating_duration_since(now));
        Some(match cooled.filter(|(until, _)| *until > now) {
            Some((_, kind)) => refused.for_account(kind),
            None => refused,
        })
    }

    /// Learns from an answer to a call that had `ticket`.
    pub(crate) fn report(&self, ticket: Ticket, status: StatusCode, headers: &HeaderMap) {
        let throttled =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        // The common case: a healthy answer to a call the pace did not send.
        // No lock and no clock, unless the provider says its quota is spent.
        if !throttled && ticket.released.is_none() {
            if let Some(spent) = spent_for(headers, SystemTime::now) {
                self.close_gate(spent, "the provider's rate-limit headers say it is spent");
            }
            return;
        }
        let wait = if throttled {
            headers_retry_after(headers, SystemTime::now())
        } else {
            None
        };
        // A 503 that asks for no wait is an outage, not a limit: the
        // breaker's. A `Retry-After: 0` asks for no waiting at all.
        if (status == StatusCode::SERVICE_UNAVAILABLE && wait.is_none())
            || wait == Some(Duration::ZERO)
        {
            return;
        }
        let spent = spent_for(headers, SystemTime::now);
        let inner = &*self.inner;
        let mut state = lock(&inner.state);
        let now = Instant::now();
        if throttled {
            inner.count(&inner.throttled, telemetry::RATE_LIMIT_THROTTLED);
            if let Some(wait) = wait.max(spent) {
                state.close(now, inner.gate_for(wait));
            }
            if state.pacer.is_on() {
                state.pacer.throttled(now, ticket.released);
            } else {
                tracing::info!(
                    status = status.as_u16(),
                    wait_secs = wait.map(|w| w.as_secs_f64()),
                    "provider throttled: callers wait at the gate, then go at a learned pace"
                );
                let ceiling = Duration::from_millis(inner.max_wait_ms.load(Ordering::Relaxed));
                state.pacer.start(now, wait, ceiling);
            }
            inner.engaged.store(true, Ordering::Relaxed);
        } else {
            if let Some(released) = ticket.released {
                state.pacer.accepted(released);
            }
            if let Some(spent) = spent {
                state.close(now, inner.gate_for(spent));
                inner.engaged.store(true, Ordering::Relaxed);
            }
        }
    }

    #[cold]
    fn close_gate(&self, wait: Duration, why: &str) {
        let inner = &*self.inner;
        lock(&inner.state).close(Instant::now(), inner.gate_for(wait));
        inner.engaged.store(true, Ordering::Relaxed);
        tracing::debug!(wait_secs = wait.as_secs_f64(), "gate closed: {why}");
    }
}

impl Inner {
    /// How long a provider's `wait` closes the gate: at most the limiter's
    /// longest gate, said at `WARN` when it cuts the wait short.
    fn gate_for(&self, wait: Duration) -> Duration {
        let cap = Duration::from_millis(self.max_gate_ms.load(Ordering::Relaxed));
        if wait > cap {
            tracing::warn!(
                wait_secs = wait.as_secs_f64(),
                max_gate_secs = cap.as_secs_f64(),
                "the provider asked for a wait of {:.0}s; the gate closes for {:.0}s at most, then calls ask again",
                wait.as_secs_f64(),
                cap.as_secs_f64()
            );
            return cap;
        }
        wait
    }

    /// Adds one to `counter`, and to the metric `name` if the limiter is named.
    pub(super) fn count(&self, counter: &AtomicU64, name: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(meter) = self.meter.get() {
            meter.count(name);
        }
    }

    fn new(limit: Option<RateLimit>) -> Inner {
        Inner {
            engaged: AtomicBool::new(limit.is_some()),
            state: Mutex::new(State {
                buckets: limit.as_ref().map(Buckets::new),
                gate: None,
                pacer: Pacer::default(),
                cooled: None,
            }),
            line: Arc::new(tokio::sync::Semaphore::new(1)),
            queued: AtomicUsize::new(0),
            max_wait_ms: AtomicU64::new(millis(DEFAULT_MAX_WAIT)),
            max_gate_ms: AtomicU64::new(millis(DEFAULT_MAX_GATE)),
            limit,
            #[cfg(feature = "redis")]
            fleet: None,
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            meter: std::sync::OnceLock::new(),
            window: std::sync::OnceLock::new(),
            models: std::sync::OnceLock::new(),
            account: std::sync::OnceLock::new(),
        }
    }
}

impl State {
    /// Keeps every attempt back until `wait` from `now` (at most [`MAX_GATE`]).
    fn close(&mut self, now: Instant, wait: Duration) {
        let until = now.checked_add(wait.min(MAX_GATE)).unwrap_or(now);
        self.gate = Some(self.gate.map_or(until, |gate| gate.max(until)));
    }
}

/// The instant a caller waiting since `now` for a gate that opens at `gate`
/// goes: the gate, and a random part of a tenth of the wait (at most
/// [`MAX_SPREAD`]), so that a crowd is spread rather than let go at once.
pub(super) fn spread(now: Instant, gate: Instant) -> Instant {
    let window = (gate.saturating_duration_since(now) / 10).min(MAX_SPREAD);
    let extra = window.mul_f64(rand::random::<f64>());
    gate.checked_add(extra).unwrap_or(gate)
}

/// Locks the state, recovering it if a thread panicked while holding it: every
/// change to it is complete before the lock is let go.
pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("RateLimiter");
        f.field("limit", &self.inner.limit);
        #[cfg(feature = "redis")]
        if let Some(store) = &self.inner.fleet {
            f.field("fleet", store.fleet());
        }
        f.field("stats", &self.stats()).finish()
    }
}

/// A call's turn, from [`RateLimiter::acquire`]: report the call's answer
/// with [`finish`](Self::finish) so that the limiter learns from it. Dropping
/// it without an answer (the call failed before one) reports nothing.
#[derive(Debug)]
#[must_use = "report the answer with `finish`, or the limiter cannot learn the provider's pace"]
pub struct Permit {
    limiter: RateLimiter,
    ticket: Ticket,
}

impl Permit {
    pub(super) fn new(limiter: RateLimiter, ticket: Ticket) -> Permit {
        Permit { limiter, ticket }
    }

    /// Reports the answer of the call this permit let go.
    pub fn finish(self, status: StatusCode, headers: &HeaderMap) {
        self.limiter.report(self.ticket, status, headers);
    }
}

mod models;
#[cfg(test)]
mod tests;
