//! [`Hedge`]: when a slow call gets a second copy, and how many may.

use std::time::Duration;

use crate::error::ConfigError;

/// The copies a cold [`HedgeLayer`](super::HedgeLayer) may send before its
/// calls have earned any, unless [`Hedge::burst`] says otherwise.
pub const DEFAULT_BURST: u32 = 5;

/// When an idempotent call that has not been answered gets a second copy:
/// after a fixed delay, or after a percentile of the latency of recent calls;
/// and how many copies may go: a budget that each call adds
/// [`max_extra_load`](Self::max_extra_load) of a copy to (10% by default),
/// with [`burst`](Self::burst) copies to start with (5), so that a new client
/// can hedge at once. The first answer wins; the other attempt is cancelled.
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::hedge::Hedge;
///
/// // A copy after the 95th percentile of recent latencies (after 2 s until 64
/// // calls were measured), for at most 5% of calls.
/// let hedge = Hedge::percentile(0.95, Duration::from_secs(2)).max_extra_load(0.05);
/// assert!(hedge.validate().is_ok());
/// assert!(Hedge::fixed(Duration::ZERO).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Hedge {
    pub(crate) delay: Delay,
    pub(crate) max_extra_load: f64,
    pub(crate) burst: u32,
}

/// When the copy goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Delay {
    Fixed(Duration),
    /// A share (0 to 1) of recent calls answer sooner than this; until enough
    /// calls were measured, the fallback.
    Percentile(f64, Duration),
}

impl PartialEq for Hedge {
    fn eq(&self, other: &Self) -> bool {
        self.delay == other.delay
            && self.max_extra_load.to_bits() == other.max_extra_load.to_bits()
            && self.burst == other.burst
    }
}

impl Eq for Hedge {}

impl Hedge {
    /// A copy after `delay` with no answer.
    pub fn fixed(delay: Duration) -> Self {
        Hedge {
            delay: Delay::Fixed(delay),
            max_extra_load: 0.1,
            burst: DEFAULT_BURST,
        }
    }

    /// A copy once a call has waited longer than `percentile` (0.5 to 1, say
    /// 0.95) of the recent calls took; after `fallback` until 64 calls have
    /// been measured.
    pub fn percentile(percentile: f64, fallback: Duration) -> Self {
        Hedge {
            delay: Delay::Percentile(percentile, fallback),
            max_extra_load: 0.1,
            burst: DEFAULT_BURST,
        }
    }

    /// Each call adds `share` (0 to 1) of a copy to the budget; builder-style.
    /// Copies also draw on a retry budget when one is given
    /// ([`HedgeLayer::budget`](super::HedgeLayer::budget); the client's own).
    pub fn max_extra_load(mut self, share: f64) -> Self {
        self.max_extra_load = share;
        self
    }

    /// The copies the budget starts with, and holds at most (default
    /// [`DEFAULT_BURST`]); builder-style.
    pub fn burst(mut self, copies: u32) -> Self {
        self.burst = copies;
        self
    }

    /// Checks the rules: delays above zero and at most an hour, a percentile
    /// between 0.5 and 1, a load between 0 and 1, a burst of 1 to 1,000.
    /// The error names the field (`hedge.delay`, …).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad_delay = |d: Duration| d.is_zero() || d > Duration::from_secs(3_600);
        match self.delay {
            Delay::Fixed(delay) if bad_delay(delay) => {
                return Err(ConfigError::new(
                    "hedge.delay",
                    "must be above zero and at most an hour",
                ));
            }
            Delay::Percentile(p, _) if !(0.5..=1.0).contains(&p) => {
                return Err(ConfigError::new(
                    "hedge.percentile",
                    "must be between 0.5 and 1",
                ));
            }
            Delay::Percentile(_, fallback) if bad_delay(fallback) => {
                return Err(ConfigError::new(
                    "hedge.fallback",
                    "must be above zero and at most an hour",
                ));
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&self.max_extra_load) {
            return Err(ConfigError::new(
                "hedge.max_extra_load",
                "must be between 0 and 1",
            ));
        }
        if !(1..=1_000).contains(&self.burst) {
            // The budget holds at most its burst: none would mean no copy ever.
            return Err(ConfigError::new(
                "hedge.burst",
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}
