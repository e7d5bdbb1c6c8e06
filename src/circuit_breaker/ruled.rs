//! The parts of [`CircuitBreaker`] that only a breaker built with rate rules,
//! slow calls, a growing open time or attempt counting uses, and the snapshot
//! that reports them.

use std::time::{Duration, UNIX_EPOCH};

use super::{
    CircuitBreaker, CircuitState, CircuitStats, Probes, Rules, STATE_MASK, Verdict, announce, lock,
};
use crate::sync::Ordering;

impl CircuitBreaker {
    /// Whether failed attempts a retry layer below retries count too.
    #[inline]
    pub(crate) fn counts_attempts(&self) -> bool {
        self.shared.count_attempts
    }

    /// Counts a failed attempt of the call admitted in `generation` at
    /// `start`, which that call will retry: whether the
    /// circuit is still in that period (if not, the call should stop
    /// retrying).
    pub(crate) fn attempt_failed(&self, generation: u64, start: u64) -> bool {
        self.on_failure(Some(generation));
        if let Some(rules) = &self.shared.rules {
            self.observe(rules, Some(generation), start, Verdict::Failure);
        }
        self.shared.word.load(Ordering::Acquire) & !STATE_MASK == generation
    }

    /// A snapshot of the state, the counts, the time of the last failure and
    /// the open time.
    pub fn stats(&self) -> CircuitStats {
        // Give an open circuit whose timeout has run out the chance to move on first.
        self.state();
        let probes = lock(&self.shared.probes);
        let word = self.shared.word.load(Ordering::Acquire);
        let state_now = CircuitState::from_bits(word);
        let success_count = if state_now == CircuitState::HalfOpen {
            probes.successes
        } else {
            0
        };
        let last_failure = match self.shared.last_failure.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(UNIX_EPOCH + Duration::from_nanos(nanos)),
        };
        CircuitStats {
            state: state_now,
            failure_count: self.shared.failure_count.load(Ordering::Relaxed),
            success_count,
            last_failure,
            open_time: self.open_time(&probes, state_now),
        }
    }

    /// While open, the length of this open period; otherwise the length the
    /// next one would have, before jitter.
    fn open_time(&self, probes: &Probes, state: CircuitState) -> Duration {
        let timeout = self.shared.timeout;
        match (&self.shared.rules, state) {
            (_, CircuitState::Open) => probes.open_for,
            (None, _) => timeout,
            (Some(rules), CircuitState::HalfOpen) => {
                rules.next_open_time(timeout, probes.failed_recoveries.saturating_add(1))
            }
            (Some(rules), CircuitState::Closed) => rules.next_open_time(timeout, 0),
        }
    }

    /// The admission time of a call, for a breaker that times its calls (see
    /// [`Ticket::start`](super::Ticket)); 0 for one that does not.
    #[inline]
    pub(super) fn started(&self) -> u64 {
        match &self.shared.rules {
            Some(rules) if rules.timed() => self.now_nanos().saturating_add(1),
            _ => 0,
        }
    }

    /// The clock for a timed call (see [`Ticket::timed`]) started again: a
    /// service admits before its inner service is ready, and the call's time
    /// starts only then.
    #[cold]
    pub(crate) fn clock(&self) -> u64 {
        self.now_nanos().saturating_add(1)
    }

    /// Counts an outcome (not an ignored one) in the rate rules, and opens the
    /// circuit if one of them says so. `generation` is the period the call
    /// belongs to, `start` 0 for an untimed call.
    pub(super) fn observe(
        &self,
        rules: &Rules,
        generation: Option<u64>,
        start: u64,
        verdict: Verdict,
    ) {
        if !rules.counts() {
            return;
        }
        let word = self.shared.word.load(Ordering::Acquire);
        // Only the calls of the current closed period count; half-open keeps
        // its own rules.
        if CircuitState::from_bits(word) != CircuitState::Closed
            || generation.is_some_and(|g| g != word & !STATE_MASK)
        {
            return;
        }
        let now = self.now_nanos();
        let elapsed = (start != 0).then(|| now.saturating_sub(start - 1));
        if let Some(reason) = rules.observe(now, verdict == Verdict::Failure, elapsed) {
            self.trip(word, reason);
        }
    }

    #[cold]
    fn trip(&self, word: u64, reason: &'static str) {
        let mut probes = lock(&self.shared.probes);
        // Another outcome may have opened the circuit since `word` was read.
        if self.shared.word.load(Ordering::Acquire) == word {
            let mut t = self.transition(&mut probes, word, CircuitState::Open);
            drop(probes);
            t.reason = reason;
            announce(t);
        }
    }
}
