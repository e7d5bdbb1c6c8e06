//! The breaker itself: admission, outcomes and transitions, shared by every
//! handle and every service of one circuit.

use std::fmt;
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::config::{CircuitBreakerConfig, CircuitStats};
use super::health::{Extras, HealthProbe};
use super::refusals::Refusals;
use super::rules::Rules;
use super::state::{CircuitState, GENERATION_ONE, STATE_MASK, Transition, announce, pack};
use crate::sync::{Arc, AtomicU32, AtomicU64, Mutex, Ordering, lock};
use crate::telemetry::{self, Meter};

/// A cheap, cloneable handle to one circuit breaker's shared state.
///
/// See the [module documentation](super) for the rules.
///
/// # Clone
///
/// Clones share one circuit: a failure recorded through any clone counts for all.
///
/// # Thread safety
///
/// All methods take `&self` and may be called from any thread. While the circuit
/// is closed, admitting a call and recording a success are lock-free (a few atomic
/// loads, and a store only when a failure count must be reset). Transitions and
/// half-open admissions take a short internal lock.
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

// `repr(C)`, hot fields first: what every call reads (the word, the rules
// pointer) shares one cache line with the failure count.
#[repr(C)]
pub(super) struct Shared {
    /// State and generation, see `pack`.
    word: AtomicU64,
    /// Failure-rate and slow-call rules and open-time backoff; `None` for the
    /// defaults, which need none of it.
    rules: Option<Box<Rules>>,
    failure_count: AtomicU32,
    failure_threshold: u32,
    half_open_max_calls: u32,
    timeout: Duration,
    /// Nanoseconds after `epoch` from which an open circuit may move to half-open.
    reopen_at: AtomicU64,
    /// Nanoseconds since the Unix epoch of the last failure; 0 for none.
    last_failure: AtomicU64,
    epoch: Instant,
    /// Guards every transition and the half-open bookkeeping.
    probes: Mutex<Probes>,
    /// The state for subscribers; updated under `probes`, so it always ends on
    /// the latest state.
    watch: tokio::sync::watch::Sender<CircuitState>,
    /// Where the state, transitions and refusals are reported.
    meter: Meter,
    /// Transitions made, for the model checks.
    #[cfg(all(test, loom))]
    transitions: AtomicU64,
    /// Refused calls, for the rate-limited refusal log (cache-line striped).
    refusals: Refusals,
    /// Whether failed attempts a retry layer below retries count too.
    count_attempts: bool,
    /// The check while open, whether its task runs (1), and how long a
    /// caller may wait for an open circuit to close.
    health: Option<HealthProbe>,
    probing: AtomicU32,
    patience: Option<Duration>,
}

#[derive(Debug, Default)]
struct Probes {
    /// When each half-open slot that `can_attempt` handed out was taken
    /// (nanoseconds after `epoch`), oldest first, until its outcome is recorded.
    manual: std::collections::VecDeque<u64>,
    /// Test calls admitted in the current half-open period and not given back.
    admitted: u32,
    /// Test calls that succeeded in the current half-open period.
    successes: u32,
    /// Half-open periods in a row that ended open again (kept across periods).
    failed_recoveries: u32,
    /// The length of the latest open period (kept across periods).
    open_for: Duration,
}

/// What an admitted call's outcome means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// Says nothing about the service's health (cancelled, local congestion).
    Ignore,
}

/// Proof that a call was admitted, and in which period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The generation the call was admitted in (a multiple of 4), bit 0 set
    /// for a half-open test call, and bit 1 always set: never zero, so that an
    /// `Option<Ticket>` is two words, returned in registers.
    tag: NonZeroU64,
    /// Nanoseconds after `epoch` the call was admitted at, plus one; 0 when the
    /// breaker does not time its calls.
    start: u64,
}

impl Ticket {
    const SET: NonZeroU64 = NonZeroU64::MIN.saturating_add(1);

    #[inline]
    fn new(word: u64, half_open: bool, start: u64) -> Self {
        Ticket {
            tag: Self::SET | (word & !STATE_MASK) | u64::from(half_open),
            start,
        }
    }

    /// Whether the call holds a half-open test slot.
    #[inline]
    pub(super) fn half_open(&self) -> bool {
        self.tag.get() & 1 != 0
    }

    /// The generation the call was admitted in.
    #[inline]
    pub(super) fn generation(&self) -> u64 {
        self.tag.get() & !STATE_MASK
    }

    /// When the call was admitted (see the field), for the rules.
    #[inline]
    pub(super) fn start(&self) -> u64 {
        self.start
    }

    /// Whether the call is timed, for the slow-call rule.
    #[inline]
    pub(super) fn timed(&self) -> bool {
        self.start != 0
    }

    /// The same ticket, its clock started at `start` (from `clock`).
    #[inline]
    pub(super) fn started_at(self, start: u64) -> Self {
        Ticket { start, ..self }
    }
}

// ===== impl CircuitBreaker =====

impl CircuitBreaker {
    /// Creates a closed circuit breaker.
    ///
    /// Zero counts in `config` are treated as 1 (see
    /// [`CircuitBreakerConfig::validate`]).
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::build(config, Meter::default(), None, Extras::default())
    }

    /// The breaker with `rules`, reporting its state to `meter`.
    pub(super) fn build(
        config: CircuitBreakerConfig,
        meter: Meter,
        rules: Option<Box<Rules>>,
        extras: Extras,
    ) -> Self {
        let labelled = meter.is_named();
        let breaker = CircuitBreaker {
            shared: Arc::new(Shared {
                failure_threshold: config.failure_threshold.max(1),
                half_open_max_calls: config.half_open_max_calls.max(1),
                timeout: config.timeout,
                word: AtomicU64::new(pack(CircuitState::Closed, 0)),
                failure_count: AtomicU32::new(0),
                reopen_at: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
                epoch: Instant::now(),
                refusals: Refusals::default(),
                count_attempts: extras.count_attempts,
                health: extras.health,
                probing: AtomicU32::new(0),
                patience: extras.patience,
                probes: Mutex::new(Probes::default()),
                watch: tokio::sync::watch::Sender::new(CircuitState::Closed),
                meter,
                rules,
                #[cfg(all(test, loom))]
                transitions: AtomicU64::new(0),
            }),
        };
        if labelled {
            breaker.report(CircuitState::Closed);
        }
        breaker
    }

    /// Whether `self` and `other` are handles to the same circuit.
    pub fn same_as(&self, other: &CircuitBreaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The settings this breaker runs with (zero counts already raised to 1).
    pub fn config(&self) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: self.shared.failure_threshold,
            timeout: self.shared.timeout,
            half_open_max_calls: self.shared.half_open_max_calls,
        }
    }

    /// Whether a call may go ahead now.
    ///
    /// Always `true` while closed and `false` while open. Once the recovery timeout
    /// has elapsed, this call moves the circuit to half-open; there, each `true`
    /// takes one of `half_open_max_calls` test slots, and the caller must report the
    /// outcome with [`record_success`](Self::record_success) or
    /// [`record_failure`](Self::record_failure).
    ///
    /// Prefer [`try_acquire`](Self::try_acquire), whose permit cannot be
    /// forgotten. A half-open slot taken here that gets no outcome within
    /// `timeout` (its caller panicked, or was cancelled) is reclaimed, so the
    /// breaker cannot keep refusing forever.
    pub fn can_attempt(&self) -> bool {
        let word = self.shared.word.load(Ordering::Acquire);
        CircuitState::from_bits(word) == CircuitState::Closed || self.admit_as(true).is_some()
    }

    /// The current state, moving an open circuit to half-open if its recovery
    /// timeout has elapsed.
    pub fn state(&self) -> CircuitState {
        let word = self.shared.word.load(Ordering::Acquire);
        let state = CircuitState::from_bits(word);
        if state == CircuitState::Open && self.recovery_due() {
            let mut probes = lock(&self.shared.probes);
            let word = self.shared.word.load(Ordering::Acquire);
            if CircuitState::from_bits(word) == CircuitState::Open && self.recovery_due() {
                let t = self.transition(&mut probes, word, CircuitState::HalfOpen);
                drop(probes);
                announce(t);
                return CircuitState::HalfOpen;
            }
            return CircuitState::from_bits(word);
        }
        state
    }

    /// A subscription to the breaker's state, for an application that alerts or
    /// fails over when a provider's circuit opens.
    ///
    /// The receiver always ends on the latest state; a slow reader may miss
    /// intermediate ones (use the `tracing` events for a full log). The move from
    /// open to half-open happens on the first look after the timeout, so a
    /// subscriber sees it only once something looks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
    /// use stache_resilience::circuit_breaker::CircuitState;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig { failure_threshold: 1, ..Default::default() });
    /// let mut states = breaker.subscribe();
    /// breaker.record_failure();
    /// states.changed().await.unwrap();
    /// assert_eq!(*states.borrow(), CircuitState::Open);
    /// # }
    /// ```
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<CircuitState> {
        self.shared.watch.subscribe()
    }

    // ===== admission and outcomes used by the layer =====

    /// Admits a call if the circuit allows it.
    #[inline]
    pub(crate) fn admit(&self) -> Option<Ticket> {
        let word = self.shared.word.load(Ordering::Acquire);
        match CircuitState::from_bits(word) {
            CircuitState::Closed => Some(Ticket::new(word, false, self.started())),
            _ => self.admit_as(false),
        }
    }

    /// Admits a call outside the closed fast path; `manual` for a slot taken by
    /// [`can_attempt`](Self::can_attempt), which is reclaimed if it is never
    /// reported.
    #[cold]
    fn admit_as(&self, manual: bool) -> Option<Ticket> {
        let word = self.shared.word.load(Ordering::Acquire);
        if CircuitState::from_bits(word) == CircuitState::Open {
            let now = self.now_nanos();
            if now < self.shared.reopen_at.load(Ordering::Acquire) {
                self.shared.refusals.refused(word, now);
                self.shared.meter.count(telemetry::BREAKER_REJECTIONS);
                return None;
            }
        }
        let ticket = self.admit_slow(manual);
        if ticket.is_none() {
            let word = self.shared.word.load(Ordering::Acquire);
            self.shared.refusals.refused(word, self.now_nanos());
            self.shared.meter.count(telemetry::BREAKER_REJECTIONS);
        }
        ticket
    }

    #[cold]
    fn admit_slow(&self, manual: bool) -> Option<Ticket> {
        let mut probes = lock(&self.shared.probes);
        let mut word = self.shared.word.load(Ordering::Acquire);
        let mut transition = None;
        let ticket = match CircuitState::from_bits(word) {
            CircuitState::Closed => Some(Ticket::new(word, false, self.started())),
            CircuitState::Open if !self.recovery_due() => None,
            state => {
                if state == CircuitState::Open {
                    transition = Some(self.transition(&mut probes, word, CircuitState::HalfOpen));
                    word = self.shared.word.load(Ordering::Acquire);
                }
                if probes.admitted >= self.shared.half_open_max_calls {
                    self.reclaim_manual(&mut probes);
                }
                if probes.admitted < self.shared.half_open_max_calls {
                    probes.admitted += 1;
                    if manual {
                        probes.manual.push_back(self.now_nanos());
                    }
                    Some(Ticket::new(word, true, 0))
                } else {
                    None
                }
            }
        };
        drop(probes);
        if let Some(t) = transition {
            announce(t);
        }
        ticket
    }

    /// Records the outcome of a call admitted with `ticket`.
    ///
    /// Outcomes from an earlier period (the circuit changed state since the call
    /// was admitted) are stale and change nothing but the last-failure time.
    #[inline]
    pub(crate) fn settle(&self, ticket: Ticket, verdict: Verdict) {
        match verdict {
            Verdict::Success => self.on_success(Some(ticket.generation())),
            Verdict::Failure => self.on_failure(Some(ticket.generation())),
            Verdict::Ignore => return self.release(ticket),
        }
        if let Some(rules) = &self.shared.rules {
            self.observe(rules, Some(ticket.generation()), ticket.start, verdict);
        }
    }

    /// Frees the half-open slots that `can_attempt` handed out at least
    /// `timeout` ago and that never got an outcome.
    fn reclaim_manual(&self, probes: &mut Probes) {
        let timeout = u64::try_from(self.shared.timeout.as_nanos()).unwrap_or(u64::MAX);
        let now = self.now_nanos();
        while let Some(&taken) = probes.manual.front() {
            if now.saturating_sub(taken) < timeout {
                break;
            }
            probes.manual.pop_front();
            probes.admitted = probes.admitted.saturating_sub(1);
            tracing::warn!(
                "circuit breaker: reclaimed a half-open slot that got no outcome within the timeout"
            );
        }
    }

    /// Gives back a half-open slot whose call ended without an outcome.
    #[inline]
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.half_open() {
            self.release_slot(ticket);
        }
    }

    #[cold]
    fn release_slot(&self, ticket: Ticket) {
        let mut probes = lock(&self.shared.probes);
        let word = self.shared.word.load(Ordering::Acquire);
        if word == pack(CircuitState::HalfOpen, ticket.generation()) {
            probes.admitted = probes.admitted.saturating_sub(1);
        }
    }

    #[inline]
    fn on_success(&self, generation: Option<u64>) {
        let shared = &*self.shared;
        let word = shared.word.load(Ordering::Acquire);
        if generation.is_some_and(|g| g != word & !STATE_MASK) {
            return;
        }
        match CircuitState::from_bits(word) {
            CircuitState::Closed => {
                // Load first: a store on every success would bounce the cache line
                // between cores even when there is nothing to reset.
                if shared.failure_count.load(Ordering::Relaxed) != 0 {
                    shared.failure_count.store(0, Ordering::Relaxed);
                }
            }
            CircuitState::Open => {}
            CircuitState::HalfOpen => self.half_open_success(word, generation.is_none()),
        }
    }

    #[cold]
    fn half_open_success(&self, word: u64, manual: bool) {
        let mut probes = lock(&self.shared.probes);
        if self.shared.word.load(Ordering::Acquire) != word {
            return;
        }
        if manual {
            // A reported slot of `can_attempt` is no longer a candidate for reclaiming.
            probes.manual.pop_front();
        }
        probes.successes += 1;
        if probes.successes >= self.shared.half_open_max_calls {
            let t = self.transition(&mut probes, word, CircuitState::Closed);
            drop(probes);
            announce(t);
        }
    }

    #[cold]
    fn on_failure(&self, generation: Option<u64>) {
        let shared = &*self.shared;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        shared.last_failure.store(now, Ordering::Relaxed);

        let word = shared.word.load(Ordering::Acquire);
        if generation.is_some_and(|g| g != word & !STATE_MASK) {
            return;
        }
        match CircuitState::from_bits(word) {
            CircuitState::Closed => {
                let failures = shared
                    .failure_count
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if failures >= shared.failure_threshold
                    && shared.rules.as_ref().is_none_or(|r| r.consecutive)
                {
                    let mut probes = lock(&shared.probes);
                    // A success may have reset the count, or another failure may
                    // have opened the circuit, since the increment above.
                    if shared.word.load(Ordering::Acquire) == word
                        && shared.failure_count.load(Ordering::Acquire) >= shared.failure_threshold
                    {
                        let t = self.transition(&mut probes, word, CircuitState::Open);
                        drop(probes);
                        announce(t);
                    }
                }
            }
            CircuitState::Open => {
                shared.failure_count.fetch_add(1, Ordering::AcqRel);
            }
            CircuitState::HalfOpen => {
                let mut probes = lock(&shared.probes);
                if shared.word.load(Ordering::Acquire) == word {
                    shared.failure_count.fetch_add(1, Ordering::AcqRel);
                    let t = self.transition(&mut probes, word, CircuitState::Open);
                    drop(probes);
                    announce(t);
                }
            }
        }
    }

    // ===== transitions =====

    #[inline]
    fn report(&self, state: CircuitState) {
        let meter = &self.shared.meter;
        meter.set(telemetry::BREAKER_STATE, state.to_bits() as f64);
    }

    fn now_nanos(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.shared.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn recovery_due(&self) -> bool {
        self.now_nanos() >= self.shared.reopen_at.load(Ordering::Acquire)
    }

    /// Moves the circuit from the state in `word` to `to`. The caller holds the
    /// probes lock and has checked that `word` is current.
    fn transition(&self, probes: &mut Probes, word: u64, to: CircuitState) -> Transition {
        let shared = &*self.shared;
        let from = CircuitState::from_bits(word);
        let generation = (word & !STATE_MASK).wrapping_add(GENERATION_ONE);
        let failed_recoveries = match (from, to) {
            (CircuitState::HalfOpen, CircuitState::Open) => {
                probes.failed_recoveries.saturating_add(1)
            }
            (_, CircuitState::Closed) => 0,
            _ => probes.failed_recoveries,
        };
        *probes = Probes {
            failed_recoveries,
            open_for: probes.open_for,
            ..Probes::default()
        };
        #[cfg(all(test, loom))]
        shared.transitions.fetch_add(1, Ordering::SeqCst);
        if let Some(rules) = &shared.rules {
            rules.clear();
        }
        match to {
            CircuitState::Open => {
                probes.open_for = match &shared.rules {
                    Some(rules) => rules.open_time(shared.timeout, failed_recoveries),
                    None => shared.timeout,
                };
                let open_for = u64::try_from(probes.open_for.as_nanos()).unwrap_or(u64::MAX);
                let reopen_at = self.now_nanos().saturating_add(open_for);
                shared.reopen_at.store(reopen_at, Ordering::Release);
                if let Some(probe) = &shared.health {
                    recovery::start(self, probe);
                }
            }
            CircuitState::HalfOpen => {}
            CircuitState::Closed => shared.failure_count.store(0, Ordering::Release),
        }
        shared.word.store(pack(to, generation), Ordering::Release);
        shared.watch.send_replace(to);
        self.report(to);
        let meter = &shared.meter;
        meter.count_by(telemetry::BREAKER_TRANSITIONS, "to", to.as_str());
        Transition {
            from,
            to,
            failures: shared.failure_count.load(Ordering::Relaxed),
            generation: generation >> 2,
            reason: match from {
                CircuitState::HalfOpen => "probe_failed",
                _ => "consecutive_failures",
            },
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.shared.word.load(Ordering::Relaxed);
        f.debug_struct("CircuitBreaker")
            .field("state", &CircuitState::from_bits(word))
            .field(
                "failure_count",
                &self.shared.failure_count.load(Ordering::Relaxed),
            )
            .field("config", &self.config())
            .field("rules", &self.shared.rules)
            .finish()
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(CircuitBreakerConfig::default())
    }
}

// The by-hand and operator API (`try_acquire`, `force_open`, `reset`); the
// health probe's task and callers waiting for the circuit to close; timing
// calls and feeding their outcomes to the rate rules.
#[path = "operator.rs"]
mod operator;
#[path = "recovery.rs"]
mod recovery;
#[path = "ruled.rs"]
mod ruled;

// The tests: by example, by property, of the builder; and the model checks.
#[cfg(all(test, not(loom)))]
#[path = "builder_tests.rs"]
mod builder_tests;
#[cfg(all(test, loom))]
#[path = "loom_tests.rs"]
mod loom_tests;
#[cfg(all(test, not(loom)))]
#[path = "prop_tests.rs"]
mod prop_tests;
#[cfg(all(test, not(loom)))]
#[path = "tests.rs"]
mod tests;
