//! [`Hedge`]: when a slow call gets a second copy, and how many may.

use std::time::Duration;

use crate::error::ConfigError;

/// When an idempotent call that has not been answered gets a second copy,
/// for [`HttpClientConfig::hedge`](crate::HttpClientConfig::hedge): after a
/// fixed delay, or after a percentile of the latency of recent calls; and
/// at most [`max_extra_load`](Self::max_extra_load) of the calls (10% by
/// default). The first answer wins; the other attempt is cancelled.
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::client::Hedge;
///
/// // A copy after the 95th percentile of recent latencies, for at most 5% of calls.
/// let hedge = Hedge::percentile(0.95).max_extra_load(0.05);
/// assert!(hedge.validate().is_ok());
/// assert!(Hedge::fixed(Duration::ZERO).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Hedge {
    pub(crate) delay: Delay,
    pub(crate) max_extra_load: f64,
}

/// When the copy goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Delay {
    Fixed(Duration),
    /// A share (0 to 1) of recent calls answer sooner than this.
    Percentile(f64),
}

impl PartialEq for Hedge {
    fn eq(&self, other: &Self) -> bool {
        self.delay == other.delay && self.max_extra_load.to_bits() == other.max_extra_load.to_bits()
    }
}

impl Eq for Hedge {}

impl Hedge {
    /// A copy after `delay` with no answer.
    pub fn fixed(delay: Duration) -> Self {
        Hedge {
            delay: Delay::Fixed(delay),
            max_extra_load: 0.1,
        }
    }

    /// A copy once a call has waited longer than `percentile` (0.5 to 1, say
    /// 0.95) of the recent calls took. No copy is sent until 64 calls have
    /// been measured.
    pub fn percentile(percentile: f64) -> Self {
        Hedge {
            delay: Delay::Percentile(percentile),
            max_extra_load: 0.1,
        }
    }

    /// Caps the copies at `share` (0 to 1) of the calls; builder-style.
    /// Copies also draw on the client's retry budget.
    pub fn max_extra_load(mut self, share: f64) -> Self {
        self.max_extra_load = share;
        self
    }

    /// Checks the rules: a fixed delay above zero and at most an hour, a
    /// percentile between 0.5 and 1, a load between 0 and 1. The error names
    /// the field (`hedge.delay`, …).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.delay {
            Delay::Fixed(delay) if delay.is_zero() || delay > Duration::from_secs(3_600) => {
                return Err(ConfigError::new(
                    "hedge.delay",
                    "must be above zero and at most an hour",
                ));
            }
            Delay::Percentile(p) if !(0.5..=1.0).contains(&p) => {
                return Err(ConfigError::new(
                    "hedge.percentile",
                    "must be between 0.5 and 1",
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
        Ok(())
    }
}
