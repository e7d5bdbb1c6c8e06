//! What opens the circuit and how long it stays open: the settings of
//! [`CircuitBreaker::builder`](super::CircuitBreaker::builder) beyond the
//! three of [`CircuitBreakerConfig`](super::CircuitBreakerConfig).

use std::time::Duration;

use crate::error::ConfigError;

/// The longest window, slow-call threshold or open time accepted: one year.
const LONGEST: Duration = Duration::from_secs(365 * 86_400);

/// The shortest failure-rate window: ten buckets of at least 100 ms.
const SHORTEST_WINDOW: Duration = Duration::from_secs(1);

/// The most calls a failure-rate rule may wait for before it judges.
const MOST_MINIMUM_CALLS: u32 = 1_000_000;

/// The most failure-rate rules one policy may combine.
const MOST_RATES: usize = 8;

/// When a closed circuit opens.
///
/// See the [module documentation](super#choosing-a-trip-policy) for which to
/// choose.
///
/// Equality compares the `f64` shares bit for bit, so that it is total (`Eq`).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
pub enum TripPolicy {
    /// `failure_threshold` failures in a row open the circuit; a success in
    /// between starts the count again. The original design's rule, and the
    /// default.
    #[default]
    Consecutive,
    /// The circuit opens when, over the last `window`, at least
    /// `minimum_calls` calls had an outcome and at least `threshold` of them
    /// (0.5 = 50%) failed.
    ///
    /// The window is ten buckets of `window / 10` each, so memory stays fixed
    /// whatever the traffic: a call counts while its bucket is one of the ten
    /// latest, so the rate covers between `0.9 × window` and `window`. Calls
    /// whose outcome says nothing about the service (a 429, a cancelled call)
    /// do not count.
    FailureRate {
        /// The share of failed calls that opens the circuit, in `(0, 1]`.
        threshold: f64,
        /// Calls the window must hold before the rate is judged, at least 1.
        minimum_calls: u32,
        /// How far back the rate looks, at least 1 s.
        #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
        window: Duration,
    },
    /// Opens the circuit when either policy would: say `Consecutive` for a
    /// provider that goes down at once, and `FailureRate` for one that fails
    /// some of the time. Build it with [`TripPolicy::either`].
    Either(Box<TripPolicy>, Box<TripPolicy>),
}

impl TripPolicy {
    /// A policy that opens the circuit when `a` or `b` would.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stache_resilience::circuit_breaker::TripPolicy;
    ///
    /// let policy = TripPolicy::either(
    ///     TripPolicy::Consecutive,
    ///     TripPolicy::FailureRate { threshold: 0.5, minimum_calls: 100, window: Duration::from_secs(30) },
    /// );
    /// assert!(policy.validate().is_ok());
    /// ```
    pub fn either(a: TripPolicy, b: TripPolicy) -> Self {
        TripPolicy::Either(Box::new(a), Box::new(b))
    }

    /// Checks the policy, naming the rule it breaks.
    ///
    /// The error's field is `policy`; its rule names the part, such as
    /// `failure_rate.threshold`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check("policy")
    }

    pub(crate) fn check(&self, field: &'static str) -> Result<(), ConfigError> {
        self.flatten(field).map(drop)
    }

    /// The rules the policy combines: whether consecutive failures open the
    /// circuit, and each failure-rate rule, checked.
    pub(super) fn flatten(&self, field: &'static str) -> Result<Flat, ConfigError> {
        let mut flat = Flat::default();
        self.collect(field, &mut flat, 0)?;
        Ok(flat)
    }

    fn collect(&self, field: &'static str, flat: &mut Flat, depth: u32) -> Result<(), ConfigError> {
        match self {
            TripPolicy::Consecutive => flat.consecutive = true,
            &TripPolicy::FailureRate {
                threshold,
                minimum_calls,
                window,
            } => {
                check_share(field, "failure_rate.threshold", threshold)?;
                if minimum_calls == 0 || minimum_calls > MOST_MINIMUM_CALLS {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "failure_rate.minimum_calls must be from 1 to {MOST_MINIMUM_CALLS}, got {minimum_calls}"
                        ),
                    ));
                }
                if !(SHORTEST_WINDOW..=LONGEST).contains(&window) {
                    return Err(ConfigError::new(
                        field,
                        format!("failure_rate.window must be from 1 s to 365 days, got {window:?}"),
                    ));
                }
                if flat.rates.len() == MOST_RATES {
                    return Err(ConfigError::new(
                        field,
                        format!("at most {MOST_RATES} failure_rate rules may be combined"),
                    ));
                }
                flat.rates.push((threshold, minimum_calls, window));
            }
            TripPolicy::Either(a, b) => {
                // Deeper than this cannot hold more than `MOST_RATES` distinct rules
                // in a sensible policy; refuse rather than recurse without bound.
                if depth >= 2 * MOST_RATES as u32 {
                    return Err(ConfigError::new(field, "either is nested too deeply"));
                }
                a.collect(field, flat, depth + 1)?;
                b.collect(field, flat, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// A policy taken apart: see [`TripPolicy::flatten`].
#[derive(Debug, Default)]
pub(super) struct Flat {
    pub(super) consecutive: bool,
    /// `(threshold, minimum_calls, window)` of each failure-rate rule.
    pub(super) rates: Vec<(f64, u32, Duration)>,
}

/// Calls slower than `threshold` count as slow, even when they succeed, and
/// the circuit opens when the share of slow calls reaches `rate`: see
/// [`CircuitBreakerBuilder::slow_calls`](super::CircuitBreakerBuilder::slow_calls).
///
/// Equality compares `rate` bit for bit, so that it is total (`Eq`).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct SlowCalls {
    /// A call that takes longer than this, from admission to outcome, is slow.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub threshold: Duration,
    /// The share of slow calls that opens the circuit, in `(0, 1]`.
    pub rate: f64,
}

impl SlowCalls {
    pub(crate) fn check(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.threshold.is_zero() || self.threshold > LONGEST {
            return Err(ConfigError::new(
                field,
                format!(
                    "slow_calls.threshold must be more than zero and at most 365 days, got {:?}",
                    self.threshold
                ),
            ));
        }
        check_share(field, "slow_calls.rate", self.rate)
    }
}

/// How long an opened circuit stays open.
///
/// Equality compares `jitter` bit for bit, so that it is total (`Eq`).
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
pub enum OpenBackoff {
    /// Always the config's `timeout` (the default).
    #[default]
    Fixed,
    /// `timeout` the first time; each failed half-open period doubles it, up to
    /// `max`, and a close starts again from `timeout`. Each open time is then
    /// cut by a random share of up to `jitter` (0.2: between 80% and 100% of
    /// it), so that breakers which opened together do not all probe at once.
    Exponential {
        /// The longest open time, at least the config's `timeout`.
        #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
        max: Duration,
        /// The largest share cut at random from each open time, in `[0, 1]`.
        jitter: f64,
    },
}

impl OpenBackoff {
    pub(crate) fn check(&self, field: &'static str, timeout: Duration) -> Result<(), ConfigError> {
        let &OpenBackoff::Exponential { max, jitter } = self else {
            return Ok(());
        };
        if max < timeout || max > LONGEST {
            return Err(ConfigError::new(
                field,
                format!(
                    "exponential.max must be at least the timeout ({timeout:?}) and at most 365 days, got {max:?}"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::new(
                field,
                format!("exponential.jitter must be from 0 to 1, got {jitter}"),
            ));
        }
        Ok(())
    }

    /// The open time after `failed` failed recoveries in a row, before jitter.
    pub(super) fn base(&self, timeout: Duration, failed: u32) -> Duration {
        match *self {
            OpenBackoff::Fixed => timeout,
            OpenBackoff::Exponential { max, .. } => {
                let factor = 1u32.checked_shl(failed.min(31)).unwrap_or(u32::MAX);
                timeout.checked_mul(factor).map_or(max, |d| d.min(max))
            }
        }
    }

    /// The open time after `failed` failed recoveries, jitter included;
    /// `random` is uniform in `[0, 1)`.
    pub(super) fn spread(&self, timeout: Duration, failed: u32, random: f64) -> Duration {
        let base = self.base(timeout, failed);
        match *self {
            OpenBackoff::Fixed => base,
            OpenBackoff::Exponential { jitter, .. } => base.mul_f64(1.0 - jitter * random),
        }
    }
}

impl PartialEq for TripPolicy {
    fn eq(&self, other: &Self) -> bool {
        use TripPolicy::*;
        match (self, other) {
            (Consecutive, Consecutive) => true,
            (
                FailureRate {
                    threshold: a,
                    minimum_calls: m,
                    window: w,
                },
                FailureRate {
                    threshold: b,
                    minimum_calls: n,
                    window: v,
                },
            ) => a.to_bits() == b.to_bits() && m == n && w == v,
            (Either(a, b), Either(c, d)) => a == c && b == d,
            _ => false,
        }
    }
}

impl Eq for TripPolicy {}

impl PartialEq for SlowCalls {
    fn eq(&self, other: &Self) -> bool {
        self.threshold == other.threshold && self.rate.to_bits() == other.rate.to_bits()
    }
}

impl Eq for SlowCalls {}

impl PartialEq for OpenBackoff {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OpenBackoff::Fixed, OpenBackoff::Fixed) => true,
            (
                OpenBackoff::Exponential { max: a, jitter: j },
                OpenBackoff::Exponential { max: b, jitter: k },
            ) => a == b && j.to_bits() == k.to_bits(),
            _ => false,
        }
    }
}

impl Eq for OpenBackoff {}

fn check_share(field: &'static str, part: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{part} must be more than 0 and at most 1, got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(threshold: f64, minimum_calls: u32, secs: u64) -> TripPolicy {
        TripPolicy::FailureRate {
            threshold,
            minimum_calls,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn bad_policies_are_refused_naming_the_part() {
        for (policy, part) in [
            (rate(0.0, 10, 10), "failure_rate.threshold"),
            (rate(1.5, 10, 10), "failure_rate.threshold"),
            (rate(f64::NAN, 10, 10), "failure_rate.threshold"),
            (rate(0.5, 0, 10), "failure_rate.minimum_calls"),
            (rate(0.5, 2_000_000, 10), "failure_rate.minimum_calls"),
            (rate(0.5, 10, 0), "failure_rate.window"),
            (rate(0.5, 10, 400 * 86_400), "failure_rate.window"),
            (
                TripPolicy::either(TripPolicy::Consecutive, rate(2.0, 1, 1)),
                "failure_rate.threshold",
            ),
        ] {
            let err = policy.validate().unwrap_err();
            assert_eq!(err.field(), "policy");
            assert!(err.rule().starts_with(part), "{policy:?}: {err}");
        }
        let mut deep = TripPolicy::Consecutive;
        for _ in 0..40 {
            deep = TripPolicy::either(deep, TripPolicy::Consecutive);
        }
        assert!(deep.validate().unwrap_err().rule().contains("nested"));
        let mut many = rate(0.5, 1, 1);
        for _ in 0..MOST_RATES {
            many = TripPolicy::either(many, rate(0.5, 1, 1));
        }
        assert!(many.validate().unwrap_err().rule().contains("at most"));
    }

    #[test]
    fn either_flattens_into_its_rules() {
        let flat = TripPolicy::either(rate(0.5, 100, 30), TripPolicy::Consecutive)
            .flatten("policy")
            .unwrap();
        assert!(flat.consecutive);
        assert_eq!(flat.rates, vec![(0.5, 100, Duration::from_secs(30))]);
        let flat = rate(0.1, 5, 2).flatten("policy").unwrap();
        assert!(!flat.consecutive);
    }

    #[test]
    fn slow_calls_and_backoff_are_checked() {
        let slow = |secs: u64, rate: f64| SlowCalls {
            threshold: Duration::from_secs(secs),
            rate,
        };
        assert!(slow(5, 0.5).check("slow").is_ok());
        assert!(
            slow(0, 0.5)
                .check("slow")
                .unwrap_err()
                .rule()
                .starts_with("slow_calls.threshold")
        );
        assert!(
            slow(5, 0.0)
                .check("slow")
                .unwrap_err()
                .rule()
                .starts_with("slow_calls.rate")
        );
        let exp = |max: u64, jitter: f64| OpenBackoff::Exponential {
            max: Duration::from_secs(max),
            jitter,
        };
        let timeout = Duration::from_secs(10);
        assert!(exp(100, 0.2).check("b", timeout).is_ok());
        assert!(
            exp(5, 0.2)
                .check("b", timeout)
                .unwrap_err()
                .rule()
                .contains("max")
        );
        assert!(
            exp(100, 1.5)
                .check("b", timeout)
                .unwrap_err()
                .rule()
                .contains("jitter")
        );
        assert!(exp(100, f64::NAN).check("b", timeout).is_err());
        assert!(OpenBackoff::Fixed.check("b", timeout).is_ok());
    }

    #[test]
    fn exponential_doubles_up_to_max_and_jitter_only_cuts() {
        let backoff = OpenBackoff::Exponential {
            max: Duration::from_secs(100),
            jitter: 0.5,
        };
        let timeout = Duration::from_secs(10);
        let bases: Vec<u64> = (0..6).map(|n| backoff.base(timeout, n).as_secs()).collect();
        assert_eq!(bases, [10, 20, 40, 80, 100, 100]);
        assert_eq!(backoff.base(timeout, u32::MAX), Duration::from_secs(100));
        assert_eq!(backoff.spread(timeout, 1, 0.0), Duration::from_secs(20));
        assert_eq!(backoff.spread(timeout, 1, 0.5), Duration::from_secs(15));
        assert_eq!(OpenBackoff::Fixed.spread(timeout, 7, 0.9), timeout);
    }
}

/// Everything a breaker can be told beyond the original design's three
/// settings ([`CircuitBreakerConfig`](super::CircuitBreakerConfig)): when it
/// opens, which calls count as slow, and how long it stays open. What
/// [`CircuitBreakerBuilder`](super::CircuitBreakerBuilder) builds with, and
/// what [`HttpClientConfig::breaker`](crate::HttpClientConfig::breaker) holds.
///
/// In a settings file (feature `serde`), every field optional:
///
/// ```toml
/// [providers.openai.breaker]
/// policy = { failure_rate = { threshold = 0.5, minimum_calls = 100, window = 30 } }
/// slow_calls = { threshold = 20, rate = 0.5 }
/// open_backoff = { exponential = { max = 600, jitter = 0.2 } }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BreakerOptions {
    /// When the closed circuit opens (default [`TripPolicy::Consecutive`]:
    /// the threshold of failures in a row).
    pub policy: TripPolicy,
    /// Calls slower than this count as slow, and a share of them opens the
    /// circuit (default none); see
    /// [`CircuitBreakerBuilder::slow_calls`](super::CircuitBreakerBuilder::slow_calls).
    pub slow_calls: Option<SlowCalls>,
    /// How long the circuit stays open each time (default
    /// [`OpenBackoff::Fixed`]: the config's `timeout`).
    pub open_backoff: OpenBackoff,
    /// Whether each failed attempt counts, not only each call's outcome
    /// (default `false`, the original design's rule: one outcome per call,
    /// after its last attempt). With it, a [`RetryLayer`](crate::RetryLayer)
    /// under the breaker's layer reports every attempt it retries as a
    /// failure, so an outage under load opens the circuit after
    /// `failure_threshold` failed attempts rather than after that many calls
    /// have run their whole retry schedules; a call whose attempts opened the
    /// circuit stops retrying.
    pub count_attempts: bool,
    /// How long a call that meets an open circuit may wait for it to close
    /// (default none, the original design's rule: refused at once). A call
    /// waits no longer than this, nor past its own deadline in an
    /// [`HttpClient`](crate::HttpClient), nor at all when another provider of
    /// a [`ProviderGroup`](crate::failover::ProviderGroup) could take it. A
    /// call whose retries met the circuit opening waits the same way before
    /// its next attempt. Waiting callers are let go when the circuit closes
    /// (a health probe, or a half-open probe, found the provider back),
    /// spread over half a second; see
    /// [`CircuitBreakerBuilder::wait_while_open`](super::CircuitBreakerBuilder::wait_while_open).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs::option"))]
    pub wait_while_open: Option<Duration>,
}

impl BreakerOptions {
    /// Checks each part, naming it as a field of
    /// [`HttpClientConfig::breaker`](crate::HttpClientConfig::breaker).
    pub(crate) fn check(&self, open_time: Duration) -> Result<(), ConfigError> {
        self.policy.check("breaker.policy")?;
        check_wait("breaker.wait_while_open", self.wait_while_open)?;
        if let Some(slow) = &self.slow_calls {
            slow.check("breaker.slow_calls")?;
        }
        self.open_backoff.check("breaker.open_backoff", open_time)
    }
}

/// Checks a [`BreakerOptions::wait_while_open`], named `field`.
pub(super) fn check_wait(field: &'static str, wait: Option<Duration>) -> Result<(), ConfigError> {
    match wait {
        Some(wait) if wait.is_zero() || wait > Duration::from_secs(86_400) => {
            Err(ConfigError::new(
                field,
                format!("must be more than 0 and at most a day, got {wait:?}"),
            ))
        }
        _ => Ok(()),
    }
}
