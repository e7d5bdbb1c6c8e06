//! A breaker's policy in the form it runs: the windows its rate rules count
//! in, and the open time it backs off with. A breaker built with the defaults
//! has none of this, and its closed path never looks further than a null
//! pointer.

use std::time::Duration;

use super::policy::{OpenBackoff, SlowCalls, TripPolicy};
use super::window::Window;
use crate::error::ConfigError;

/// The window and minimum slow calls are judged over when no failure-rate rule
/// gives one: M.E.Http.Resilience's 30 s and 100 calls.
const SLOW_WINDOW: Duration = Duration::from_secs(30);
const SLOW_MINIMUM_CALLS: u32 = 100;

#[derive(Debug)]
pub(super) struct Rules {
    /// Whether consecutive failures open the circuit too.
    pub(super) consecutive: bool,
    rates: Box<[Judge]>,
    slow: Option<Slow>,
    backoff: OpenBackoff,
}

/// One rate rule: the share of marked calls (failed, or slow) over a window
/// that opens the circuit, once the window holds `minimum_calls`.
#[derive(Debug)]
struct Judge {
    /// The share in billionths, so that the comparison is exact: 7 failures
    /// of 100 reach 0.07 (in `f64`, `0.07 * 100.0` is just above 7).
    share: u64,
    minimum_calls: u32,
    window: Window,
}

impl Judge {
    fn new(share: f64, minimum_calls: u32, window: Duration) -> Self {
        Judge {
            // Checked to be in (0, 1]: at most 10^9, and never 0.
            share: ((share * 1e9).round() as u64).max(1),
            minimum_calls,
            window: Window::new(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// Counts a call; whether the rule now opens the circuit.
    ///
    /// This gives the verdict of looking after every call while summing the
    /// window only when the verdict can have changed: a marked call raises
    /// the share, a new stretch drops old calls, and a look left pending
    /// (the share reached with too few calls) waits for the minimum. An
    /// unmarked call in the same stretch otherwise only lowers the share.
    fn count(&self, now: u64, marked: bool) -> bool {
        let recorded = self.window.record(now, marked);
        if !(marked || recorded.fresh || recorded.pending) {
            return false;
        }
        match self.judge(now) {
            Reading::Open => true,
            Reading::Wait if !recorded.pending => {
                // A call counted since our look may have missed the flag: the
                // flag and its record touch one atomic word, so one of the two
                // sees the other. Look again.
                self.window.flag(now);
                self.judge(now) == Reading::Open
            }
            Reading::Wait | Reading::Closed => false,
        }
    }

    fn judge(&self, now: u64) -> Reading {
        let counts = self.window.counts(now);
        // At most 10^9 × 2^24: no overflow of a u64.
        if u64::from(counts.marked) * 1_000_000_000 < self.share * u64::from(counts.calls) {
            Reading::Closed
        } else if counts.calls < self.minimum_calls {
            Reading::Wait
        } else {
            Reading::Open
        }
    }

    fn clear(&self) {
        self.window.clear();
    }
}

/// What a rule's window says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The share is below the rule's.
    Closed,
    /// The share is reached, but with too few calls.
    Wait,
    /// The share is reached with enough calls.
    Open,
}

#[derive(Debug)]
struct Slow {
    /// Nanoseconds from admission to outcome beyond which a call is slow.
    threshold: u64,
    judge: Judge,
}

/// Why a rule opened the circuit, as logged.
const FAILURE_RATE: &str = "failure_rate";
const SLOW_CALLS: &str = "slow_calls";

impl Rules {
    /// The rules of `policy`, slow calls and backoff, checked; `None` for the
    /// defaults (consecutive failures, no slow calls, a fixed open time).
    pub(super) fn new(
        policy: &TripPolicy,
        slow: Option<SlowCalls>,
        backoff: OpenBackoff,
        timeout: Duration,
    ) -> Result<Option<Box<Rules>>, ConfigError> {
        let flat = policy.flatten("policy")?;
        if let Some(slow) = &slow {
            slow.check("slow_calls")?;
        }
        backoff.check("open_backoff", timeout)?;
        if flat.consecutive
            && flat.rates.is_empty()
            && slow.is_none()
            && backoff == OpenBackoff::Fixed
        {
            return Ok(None);
        }
        // Slow calls are judged over the first rate rule's window and minimum.
        let (slow_minimum, slow_window) = flat
            .rates
            .first()
            .map_or((SLOW_MINIMUM_CALLS, SLOW_WINDOW), |&(_, m, w)| (m, w));
        Ok(Some(Box::new(Rules {
            consecutive: flat.consecutive,
            rates: flat
                .rates
                .iter()
                .map(|&(share, minimum_calls, window)| Judge::new(share, minimum_calls, window))
                .collect(),
            slow: slow.map(|s| Slow {
                threshold: u64::try_from(s.threshold.as_nanos()).unwrap_or(u64::MAX),
                judge: Judge::new(s.rate, slow_minimum, slow_window),
            }),
            backoff,
        })))
    }

    /// Whether calls must be timed from their admission.
    #[inline]
    pub(super) fn timed(&self) -> bool {
        self.slow.is_some()
    }

    /// Whether outcomes are counted at all (not so with only a backoff).
    #[inline]
    pub(super) fn counts(&self) -> bool {
        !self.rates.is_empty() || self.slow.is_some()
    }

    /// Counts the outcome of a call of the closed circuit that ended at `now`
    /// after `elapsed` nanoseconds (`None`: not timed). Returns the rule it
    /// makes open the circuit, if any.
    pub(super) fn observe(
        &self,
        now: u64,
        failed: bool,
        elapsed: Option<u64>,
    ) -> Option<&'static str> {
        let mut trip = None;
        for rate in &self.rates {
            if rate.count(now, failed) {
                trip = Some(FAILURE_RATE);
            }
        }
        if let (Some(slow), Some(elapsed)) = (&self.slow, elapsed) {
            if slow.judge.count(now, elapsed > slow.threshold) && trip.is_none() {
                trip = Some(SLOW_CALLS);
            }
        }
        trip
    }

    /// Forgets every count: the circuit changed state.
    pub(super) fn clear(&self) {
        for rate in &self.rates {
            rate.clear();
        }
        if let Some(slow) = &self.slow {
            slow.judge.clear();
        }
    }

    /// How long to stay open after `failed` failed recoveries in a row.
    pub(super) fn open_time(&self, timeout: Duration, failed: u32) -> Duration {
        match self.backoff {
            OpenBackoff::Exponential { jitter, .. } if jitter > 0.0 => {
                self.backoff.spread(timeout, failed, rand::random::<f64>())
            }
            _ => self.backoff.base(timeout, failed),
        }
    }

    /// The open time the next opening would use, before jitter.
    pub(super) fn next_open_time(&self, timeout: Duration, failed: u32) -> Duration {
        self.backoff.base(timeout, failed)
    }
}
