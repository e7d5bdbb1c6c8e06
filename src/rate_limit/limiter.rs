//! [`RateLimiter`]: the gate, the learned pace and the configured limits of one
//! provider, shared by every clone.

use std::fmt;
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
use crate::error::{ConfigError, RateLimited};
use crate::retry_after::headers_retry_after;
use crate::telemetry::{self, Meter};

/// The longest a gate stays closed, whatever a provider asks: a day.
const MAX_GATE: Duration = Duration::from_secs(86_400);
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

struct Inner {
    /// Whether a call must look at the state at all: a limit is configured,
    /// the pace is on, or a gate is closed. Read alone on every call.
    engaged: AtomicBool,
    state: Mutex<State>,
    /// The line of paced callers, first come first served (tokio's mutex is
    /// fair).
    line: tokio::sync::Mutex<()>,
    /// Callers waiting to enter the line.
    queued: AtomicUsize,
    max_wait_ms: AtomicU64,
    limit: Option<RateLimit>,
    /// The configured limits kept in Redis (then `buckets` is `None`).
    #[cfg(feature = "redis")]
    fleet: Option<FleetStore>,
    waited: AtomicU64,
    refused: AtomicU64,
    throttled: AtomicU64,
    /// Where waits, refusals and throttled answers are reported, once named.
    meter: std::sync::OnceLock<Meter>,
}

struct State {
    buckets: Option<Buckets>,
    /// No attempt goes before this instant.
    gate: Option<Instant>,
    pacer: Pacer,
}

/// What a call's turn left for its answer to report: whether the pace
/// released it, and how long after the attempt before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ticket {
    released: Option<Released>,
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

    /// Whether a call has to look at the limiter's state (a limit, a pace or
    /// a gate); when not, it goes at once.
    #[inline]
    pub(crate) fn engaged(&self) -> bool {
        self.inner.engaged.load(Ordering::Relaxed)
    }

    /// Waits for a call's turn: `cost` tokens, to start by `deadline`. The
    /// permit reports the call's answer back with
    /// [`finish`](Permit::finish), which is how the limiter learns a pace.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] at once, before any wait, when the known wait passes
    /// `deadline` (or, without one, the longest wait); or when no turn came
    /// by then.
    pub async fn acquire(
        &self,
        cost: u32,
        deadline: Option<Instant>,
    ) -> Result<Permit, RateLimited> {
        let ticket = if self.engaged() {
            self.wait_turn(cost, deadline).await?
        } else {
            Ticket::default()
        };
        Ok(Permit {
            limiter: self.clone(),
            ticket,
        })
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
            throttled: inner.throttled.load(Ordering::Relaxed),
            pace,
            gate_closed_for,
            #[cfg(feature = "redis")]
            fleet: inner.fleet.as_ref().map(FleetStore::stats),
        }
    }

    /// The slow path of a call's turn: the configured limits, then the gate
    /// and the pace.
    pub(crate) async fn wait_turn(
        &self,
        cost: u32,
        deadline: Option<Instant>,
    ) -> Result<Ticket, RateLimited> {
        let inner = &*self.inner;
        let arrived = Instant::now();
        let latest = match deadline {
            Some(deadline) => deadline,
            None => {
                let wait = Duration::from_millis(inner.max_wait_ms.load(Ordering::Relaxed));
                arrived.checked_add(wait).unwrap_or(arrived + MAX_GATE)
            }
        };
        let allowed = latest.saturating_duration_since(arrived);
        let refuse = |wait: Option<Duration>| {
            inner.count(&inner.refused, telemetry::RATE_LIMIT_REFUSALS);
            tracing::debug!(
                wait_secs = wait.map(|w| w.as_secs_f64()),
                allowed_secs = allowed.as_secs_f64(),
                "rate limited: not waiting past the call's deadline"
            );
            RateLimited::new(wait, allowed)
        };
        let mut waited = false;

        // The configured limits kept in Redis: a start reserved there.
        #[cfg(feature = "redis")]
        if let Some(store) = &inner.fleet {
            let at = store
                .reserve(arrived, cost, latest)
                .await
                .map_err(|wait| refuse(Some(wait)))?;
            if at > Instant::now() {
                waited = true;
                tokio::time::sleep_until(at).await;
            }
        }

        // The configured limits: a start reserved now, in arrival order.
        let reserved = lock(&inner.state)
            .buckets
            .as_mut()
            .map(|b| b.reserve(arrived, cost, latest));
        if let Some(reserved) = reserved {
            let mut at = reserved.map_err(|wait| refuse(Some(wait)))?;
            loop {
                if at > Instant::now() {
                    waited = true;
                    tokio::time::sleep_until(at).await;
                }
                let begun = lock(&inner.state)
                    .buckets
                    .as_mut()
                    .map_or(Ok(()), |b| b.begin(Instant::now()));
                match begun {
                    Ok(()) => break,
                    Err(later) => at = later,
                }
            }
        }

        // The gate, and the pace.
        loop {
            let now = Instant::now();
            let step = {
                let mut state = lock(&inner.state);
                if state.gate.is_some_and(|g| g <= now) {
                    state.gate = None;
                }
                if state.pacer.is_on() {
                    Step::Pace
                } else if let Some(gate) = state.gate {
                    Step::Gate(gate)
                } else {
                    if inner.limit.is_none() {
                        inner.engaged.store(false, Ordering::Relaxed);
                    }
                    Step::Go
                }
            };
            match step {
                Step::Go => break,
                Step::Gate(gate) => {
                    if gate > latest {
                        return Err(refuse(Some(gate - now)));
                    }
                    waited = true;
                    tokio::time::sleep_until(spread(now, gate).min(latest)).await;
                }
                Step::Pace => {
                    let turn = self.paced(deadline, latest, &refuse, &mut waited).await?;
                    if let Some(ticket) = turn {
                        if waited {
                            inner.count(&inner.waited, telemetry::RATE_LIMIT_WAITS);
                        }
                        return Ok(ticket);
                    }
                }
            }
        }
        if waited {
            inner.count(&inner.waited, telemetry::RATE_LIMIT_WAITS);
        }
        Ok(Ticket::default())
    }

    /// A turn in the line of paced callers; `None` if the pace turned off
    /// meanwhile (the caller then looks at the gate again). The wait in line
    /// is bounded by the call's deadline alone: the callers before it are
    /// not this call's wait to refuse. Its own turn, once first in line, is
    /// bounded by `latest`.
    async fn paced(
        &self,
        deadline: Option<Instant>,
        latest: Instant,
        refuse: &impl Fn(Option<Duration>) -> RateLimited,
        waited: &mut bool,
    ) -> Result<Option<Ticket>, RateLimited> {
        let inner = &*self.inner;
        inner.queued.fetch_add(1, Ordering::Relaxed);
        let turn = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, inner.line.lock()).await,
            None => Ok(inner.line.lock().await),
        };
        inner.queued.fetch_sub(1, Ordering::Relaxed);
        let Ok(_turn) = turn else {
            return Err(refuse(None));
        };
        loop {
            let now = Instant::now();
            let next = {
                let mut state = lock(&inner.state);
                if state.gate.is_some_and(|g| g <= now) {
                    state.gate = None;
                }
                let Some(release) = state.pacer.next_release() else {
                    return Ok(None);
                };
                let next = state.gate.map_or(release, |gate| gate.max(release));
                if next <= now {
                    // Nobody else in line, and no throttling for a while: the
                    // pace is no longer needed.
                    if inner.queued.load(Ordering::Relaxed) == 0 && state.pacer.settle(now) {
                        tracing::debug!("no throttled answer for a while: pacing off");
                        return Ok(None);
                    }
                    return Ok(Some(Ticket {
                        released: state.pacer.release(now),
                    }));
                }
                next
            };
            if next > latest {
                return Err(refuse(Some(next - now)));
            }
            *waited = true;
            tokio::time::sleep_until(next).await;
        }
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
                state.close(now, wait);
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
                state.close(now, spent);
                inner.engaged.store(true, Ordering::Relaxed);
            }
        }
    }

    #[cold]
    fn close_gate(&self, wait: Duration, why: &str) {
        let inner = &*self.inner;
        lock(&inner.state).close(Instant::now(), wait);
        inner.engaged.store(true, Ordering::Relaxed);
        tracing::debug!(wait_secs = wait.as_secs_f64(), "gate closed: {why}");
    }
}

impl Inner {
    /// Adds one to `counter`, and to the metric `name` if the limiter is named.
    fn count(&self, counter: &AtomicU64, name: &'static str) {
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
            }),
            line: tokio::sync::Mutex::new(()),
            queued: AtomicUsize::new(0),
            max_wait_ms: AtomicU64::new(millis(DEFAULT_MAX_WAIT)),
            limit,
            #[cfg(feature = "redis")]
            fleet: None,
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            meter: std::sync::OnceLock::new(),
        }
    }
}

enum Step {
    Go,
    Gate(Instant),
    Pace,
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
fn spread(now: Instant, gate: Instant) -> Instant {
    let window = (gate.saturating_duration_since(now) / 10).min(MAX_SPREAD);
    let extra = window.mul_f64(rand::random::<f64>());
    gate.checked_add(extra).unwrap_or(gate)
}

/// Locks the state, recovering it if a thread panicked while holding it: every
/// change to it is complete before the lock is let go.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
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
    /// Reports the answer of the call this permit let go.
    pub fn finish(self, status: StatusCode, headers: &HeaderMap) {
        self.limiter.report(self.ticket, status, headers);
    }
}

#[cfg(test)]
mod tests;
