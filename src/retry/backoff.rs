//! The delay between attempts: capped exponential backoff with jitter.

use std::time::Duration;

/// How a backoff delay is randomised, after the naming in AWS's "Exponential
/// Backoff and Jitter".
///
/// With `d = min(base_delay * 2^n, max_delay)` for failed attempt `n`:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Jitter {
    /// `d ± 50%`: uniform in `[d/2, min(3d/2, max_delay)]`. The default, as in the
    /// original design, except that samples are spread below the cap rather than
    /// clamped onto it: once `d` reaches `max_delay`, delays are uniform in
    /// `[max_delay/2, max_delay]`.
    #[default]
    Symmetric,
    /// "Full jitter": uniform in `[0, d]`. Spreads a herd of clients the most.
    Full,
    /// "Decorrelated jitter": uniform in `[base_delay, min(3 × previous delay,
    /// max_delay)]`. Each delay depends on the one before, so it needs a
    /// [`Backoff`]; [`RetryConfig::delay_for_attempt`] takes the un-jittered
    /// exponential delay as "previous".
    Decorrelated,
    /// No randomness: exactly `d`. For tests and single clients.
    None,
    /// Up to a quarter less: uniform in `[3d/4, d]`, as OpenAI's and
    /// Anthropic's own SDKs spread their retries. The `openai` and
    /// `anthropic` presets use it.
    Quarter,
}

/// Retry settings shared by [`RetryLayer`](super::RetryLayer),
/// [`with_retry`](super::with_retry) and [`with_retry_blocking`](super::with_retry_blocking).
///
/// `Default`: 3 retries after the first attempt, 500 ms base delay, 10 s cap,
/// ±50% jitter.
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::retry::RetryConfig;
///
/// let config = RetryConfig { max_retries: 5, base_delay: Duration::from_secs(2),
///                            max_delay: Duration::from_secs(60), ..Default::default() };
/// for attempt in 0..10 {
///     assert!(config.delay_for_attempt(attempt) <= config.max_delay);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryConfig {
    /// Retries after the first attempt (default 3): a call makes at most
    /// `1 + max_retries` attempts.
    pub max_retries: u32,
    /// The delay after the first failed attempt, before jitter (default 500 ms).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub base_delay: Duration,
    /// The cap on every delay, jitter and `Retry-After` included (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub max_delay: Duration,
    /// How delays are randomised (default [`Jitter::Symmetric`], ±50%).
    pub jitter: Jitter,
    /// A bound on the whole call, every attempt and every wait included
    /// (default `None`: no bound beyond the attempts' own).
    ///
    /// No retry is started whose wait would end past it: the call ends with the
    /// last attempt's result. [`RetryLayer`](super::RetryLayer) also puts it on
    /// the request as a [`RequestDeadline`](crate::timeout::RequestDeadline)
    /// (unless the request has an earlier one), so a
    /// [`TimeoutLayer`](crate::TimeoutLayer) below cuts the attempt running at
    /// the deadline. [`with_retry`](super::with_retry) cannot cut an attempt it
    /// does not own: it bounds the waits and starts no attempt past the deadline.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs::option"))]
    pub total_timeout: Option<Duration>,
    /// The most bytes of a streaming request body kept to send it again (default
    /// 64 KiB): a body that cannot be copied (`Incoming`, a boxed body, a
    /// stream, tonic's) is kept as it is sent, and one that outgrows this is
    /// sent once and not retried. See [`TeeBody`](super::TeeBody).
    pub max_replay_bytes: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            jitter: Jitter::Symmetric,
            total_timeout: None,
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
        }
    }
}

/// What an [`HttpClient`](crate::HttpClient) can be told about its retries
/// beyond the original design's three settings (`max_retries`,
/// `retry_base_delay`, `retry_max_delay`): the fields of [`RetryConfig`] of
/// the same names, and whether the [`RetryLayer`](super::RetryLayer)'s budget
/// is on. Held by [`HttpClientConfig::retry`](crate::HttpClientConfig::retry).
/// (`RetryConfig::max_replay_bytes` has no use there: the client's request
/// bodies are always kept whole.)
///
/// In a settings file (feature `serde`), every field optional:
///
/// ```toml
/// [providers.openai.retry]
/// jitter = "full"        # "symmetric" (the default), "full", "decorrelated", "quarter" or "none"
/// total_timeout = 120.0  # seconds; none by default
/// budget = false         # on by default
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryOptions {
    /// How delays are randomised (default [`Jitter::Symmetric`], ±50%); see
    /// [`RetryConfig::jitter`].
    pub jitter: Jitter,
    /// A bound on the whole call (default none); see
    /// [`RetryConfig::total_timeout`]. A call's own deadline overrides it.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs::option"))]
    pub total_timeout: Option<Duration>,
    /// Whether retries are limited by a budget (default on: retries add at
    /// most 20% to the calls, plus 10 a second); see
    /// [`RetryLayer::without_budget`](super::RetryLayer::without_budget).
    pub budget: bool,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            jitter: Jitter::Symmetric,
            total_timeout: None,
            budget: true,
        }
    }
}

/// [`RetryConfig::max_replay_bytes`]'s default: 64 KiB.
pub(crate) const DEFAULT_MAX_REPLAY_BYTES: usize = 64 * 1024;

impl RetryConfig {
    /// The delay after failed attempt `attempt` (0 for the first attempt).
    ///
    /// `d = min(base_delay × 2^attempt, max_delay)`, randomised by
    /// [`jitter`](Self::jitter) and clamped to `[0, max_delay]`, so the cap holds
    /// for any `attempt` (no overflow, no panic).
    pub fn delay_for_attempt(&self, attempt: u32) -> Duration {
        match self.jitter {
            Jitter::Decorrelated => {
                let previous = match attempt {
                    0 => self.base_delay,
                    n => self.exponential(n - 1),
                };
                self.decorrelated(previous)
            }
            _ => self.jittered(self.exponential(attempt)),
        }
    }

    /// A stateful sequence of delays for one call, needed for
    /// [`Jitter::Decorrelated`] and identical to
    /// [`delay_for_attempt`](Self::delay_for_attempt) otherwise.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            config: *self,
            steps: Steps::new(self),
        }
    }

    /// `min(base_delay × 2^attempt, max_delay)`.
    pub(crate) fn exponential(&self, attempt: u32) -> Duration {
        // Past 2^64 any non-zero base exceeds every representable cap.
        let exponent = attempt.min(64) as i32;
        let secs = self.base_delay.as_secs_f64() * 2f64.powi(exponent);
        self.cap(secs)
    }

    fn jittered(&self, d: Duration) -> Duration {
        let d = d.as_secs_f64();
        match self.jitter {
            // Uniform over `[d/2, 3d/2]` cut at the cap, rather than clamped to it:
            // clamping would put every sample above the cap exactly on it, and a
            // herd of clients retrying in step is what jitter is there to prevent.
            // At the cap (`d == max_delay`) that is `[max_delay/2, max_delay]`.
            Jitter::Symmetric => {
                let cap = self.max_delay.as_secs_f64();
                self.uniform(d * 0.5, (d * 1.5).min(cap))
            }
            Jitter::Full => self.uniform(0.0, d),
            Jitter::Quarter => {
                let d = d.min(self.max_delay.as_secs_f64());
                self.uniform(d * 0.75, d)
            }
            Jitter::None | Jitter::Decorrelated => self.cap(d),
        }
    }

    fn decorrelated(&self, previous: Duration) -> Duration {
        let cap = self.max_delay.as_secs_f64();
        let low = self.base_delay.as_secs_f64().min(cap);
        let high = (previous.as_secs_f64() * 3.0).min(cap).max(low);
        self.uniform(low, high)
    }

    /// A uniform sample of `[low, high)`, within `[0, max_delay]`.
    fn uniform(&self, low: f64, high: f64) -> Duration {
        self.cap(low + rand::random::<f64>() * (high - low).max(0.0))
    }

    /// Seconds to a `Duration` clamped to `[0, max_delay]`.
    fn cap(&self, secs: f64) -> Duration {
        if secs.is_nan() || secs <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(secs)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }
}

/// The delays of one call's retries, in order; from [`RetryConfig::backoff`].
#[derive(Debug, Clone)]
pub struct Backoff {
    config: RetryConfig,
    steps: Steps,
}

/// Where a call is in its backoff, without the config it follows: what a
/// retry layer's future keeps (its config is the layer's, shared).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    attempt: u32,
    previous: Duration,
}

impl Steps {
    /// The start of the backoff of `config`.
    pub(crate) fn new(config: &RetryConfig) -> Steps {
        Steps {
            attempt: 0,
            previous: config.base_delay,
        }
    }

    /// The delay before the next retry under `config`.
    pub(crate) fn next_delay(&mut self, config: &RetryConfig) -> Duration {
        let delay = match config.jitter {
            Jitter::Decorrelated => config.decorrelated(self.previous),
            _ => config.delay_for_attempt(self.attempt),
        };
        self.attempt = self.attempt.saturating_add(1);
        self.previous = delay;
        delay
    }
}

impl Backoff {
    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        self.steps.next_delay(&self.config)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: Jitter) -> RetryConfig {
        RetryConfig {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            jitter,
            total_timeout: None,
            max_replay_bytes: 64 * 1024,
        }
    }

    /// Samples each attempt's delay 400 times: every one within `bounds(d)`
    /// of the exponential delay `d` (1 s doubling, 10 s cap), and together
    /// covering most of that range (the jitter really spreads).
    fn assert_spread(jitter: Jitter, bounds: fn(f64) -> (f64, f64)) {
        let c = config(jitter);
        for attempt in 0..=64u32 {
            let (low, high) = bounds((2f64.powi(attempt as i32)).min(10.0));
            let (mut lo, mut hi) = (f64::MAX, 0f64);
            for _ in 0..400 {
                let got = c.delay_for_attempt(attempt).as_secs_f64();
                assert!(
                    got >= low - 1e-9 && got <= high + 1e-9,
                    "attempt {attempt}: {got} outside {low}..{high}"
                );
                lo = lo.min(got);
                hi = hi.max(got);
            }
            assert!(
                hi - lo > (high - low) * 0.8,
                "attempt {attempt}: {lo}..{hi}"
            );
        }
    }

    #[test]
    fn symmetric_jitter_stays_within_half_of_the_exponential_delay_and_the_cap() {
        assert_spread(Jitter::Symmetric, |d| (d * 0.5, (d * 1.5).min(10.0)));
    }

    #[test]
    fn quarter_jitter_is_up_to_a_quarter_shorter_and_never_past_the_cap() {
        assert_spread(Jitter::Quarter, |d| (d * 0.75, d));
    }

    #[test]
    fn the_formula_matches_the_original_examples() {
        let c = config(Jitter::None);
        let secs: Vec<f64> = (0..6)
            .map(|n| c.delay_for_attempt(n).as_secs_f64())
            .collect();
        assert_eq!(secs, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
    }

    #[test]
    fn full_and_decorrelated_jitter_respect_their_bounds() {
        let full = config(Jitter::Full);
        let dec = config(Jitter::Decorrelated);
        for attempt in 0..=64u32 {
            let d = (2f64.powi(attempt as i32)).min(10.0);
            for _ in 0..200 {
                assert!(full.delay_for_attempt(attempt).as_secs_f64() <= d + 1e-9);
                let got = dec.delay_for_attempt(attempt);
                assert!(got >= Duration::from_secs(1) && got <= Duration::from_secs(10));
            }
        }
        let mut backoff = dec.backoff();
        let mut previous = Duration::from_secs(1);
        for _ in 0..100 {
            let next = backoff.next_delay();
            assert!(next >= Duration::from_secs(1));
            assert!(next <= (previous * 3).min(Duration::from_secs(10)));
            previous = next;
        }
    }

    #[test]
    fn delays_stay_spread_at_the_cap_and_never_exceed_it() {
        for jitter in [Jitter::Symmetric, Jitter::Full, Jitter::Decorrelated] {
            let c = RetryConfig {
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(10),
                ..config(jitter)
            };
            let mut at_cap = 0;
            for _ in 0..10_000 {
                let d = c.delay_for_attempt(20);
                assert!(d <= c.max_delay, "{jitter:?}: {d:?}");
                at_cap += usize::from(d == c.max_delay);
            }
            assert!(at_cap <= 100, "{jitter:?}: {at_cap} of 10000 on the cap");
        }
        // Symmetric jitter at the cap covers [max/2, max].
        let c = config(Jitter::Symmetric);
        let samples: Vec<f64> = (0..10_000)
            .map(|_| c.delay_for_attempt(20).as_secs_f64())
            .collect();
        let lo = samples.iter().copied().fold(f64::MAX, f64::min);
        let hi = samples.iter().copied().fold(0.0, f64::max);
        assert!(
            (5.0..5.1).contains(&lo) && (9.9..=10.0).contains(&hi),
            "{lo}..{hi}"
        );
        // Below the cap, where 3d/2 passes it, nothing lands above the cap either.
        for _ in 0..10_000 {
            assert!(c.delay_for_attempt(3) <= c.max_delay);
        }
    }

    #[test]
    fn extreme_settings_neither_overflow_nor_panic() {
        let huge = RetryConfig {
            base_delay: Duration::from_nanos(1),
            max_delay: Duration::MAX,
            ..config(Jitter::Symmetric)
        };
        for attempt in [0, 1, 63, 64, 65, 1000, u32::MAX] {
            assert!(huge.delay_for_attempt(attempt) <= Duration::MAX);
        }
        let zero = RetryConfig {
            base_delay: Duration::ZERO,
            ..config(Jitter::Symmetric)
        };
        assert_eq!(zero.delay_for_attempt(u32::MAX), Duration::ZERO);
        // A base above the cap is capped, not an error.
        let inverted = RetryConfig {
            base_delay: Duration::from_secs(100),
            ..config(Jitter::Symmetric)
        };
        assert!(inverted.delay_for_attempt(0) <= Duration::from_secs(10));
    }
}
