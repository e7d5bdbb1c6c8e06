//! [`CircuitBreaker::builder`]: a breaker with a trip policy, slow calls or a
//! growing open time.

use std::time::Duration;

use super::breaker::CircuitBreaker;
use super::config::CircuitBreakerConfig;
use super::health::{Extras, HealthProbe};
use super::policy::{BreakerOptions, OpenBackoff, SlowCalls, TripPolicy};
use super::rules::Rules;
use crate::error::ConfigError;
use crate::telemetry::Meter;

/// Builds a [`CircuitBreaker`] with more than the three settings of
/// [`CircuitBreakerConfig`]; from [`CircuitBreaker::builder`].
///
/// Left alone, every setting keeps the original design's behaviour, and the
/// breaker built is the one [`CircuitBreaker::new`] makes, except that
/// [`build`](Self::build) refuses the zero counts that `new` raises to 1.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CircuitBreakerBuilder {
    config: CircuitBreakerConfig,
    options: BreakerOptions,
    meter: Meter,
    health: Option<HealthProbe>,
}

impl CircuitBreaker {
    /// A builder for a breaker with `config` and, on top, a trip policy, slow
    /// calls or an open time that grows.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
    /// use stache_resilience::circuit_breaker::{CircuitState, OpenBackoff, TripPolicy};
    ///
    /// let breaker = CircuitBreaker::builder(CircuitBreakerConfig::default())
    ///     .policy(TripPolicy::FailureRate {
    ///         threshold: 0.5,
    ///         minimum_calls: 4,
    ///         window: Duration::from_secs(30),
    ///     })
    ///     .open_backoff(OpenBackoff::Exponential { max: Duration::from_secs(600), jitter: 0.2 })
    ///     .build()
    ///     .expect("valid settings");
    ///
    /// // Failures and successes in turn: never 15 in a row, but half of them.
    /// for i in 0..4 {
    ///     let permit = breaker.try_acquire().expect("closed");
    ///     if i % 2 == 0 { permit.failure() } else { permit.success() }
    /// }
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # }
    /// ```
    pub fn builder(config: CircuitBreakerConfig) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            config,
            options: BreakerOptions::default(),
            meter: Meter::default(),
            health: None,
        }
    }
}

impl CircuitBreakerBuilder {
    /// When the closed circuit opens (default [`TripPolicy::Consecutive`]).
    pub fn policy(mut self, policy: TripPolicy) -> Self {
        self.options.policy = policy;
        self
    }

    /// Counts a call that takes longer than `threshold`, from admission to its
    /// outcome, as slow, even when it succeeds; the circuit opens when the
    /// share of slow calls reaches `rate` (in `(0, 1]`).
    ///
    /// The share is taken over the window, and with the minimum of calls, of
    /// the policy's first [`TripPolicy::FailureRate`] rule; without one, over
    /// 30 s with 100 calls at least. A slow call that failed counts as both.
    ///
    /// A call's time runs from the moment the service under a
    /// [`CircuitBreakerLayer`](super::CircuitBreakerLayer) is ready for it
    /// (waiting for a local limit does not count) to the call's outcome:
    /// for a response the classifier judges at its end (a gRPC stream, say),
    /// that is the end of the body. It is the time the breaker's caller
    /// waits, so it includes whatever runs inside the breaker: in an
    /// [`HttpClient`](crate::HttpClient), every attempt, the backoff and
    /// `Retry-After` waits between them, and the waits for the rate limiter
    /// and for a connection. Choose the threshold above what a healthy call
    /// with its retries takes.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.options.slow_calls = Some(SlowCalls { threshold, rate });
        self
    }

    /// How long an opened circuit stays open (default [`OpenBackoff::Fixed`]).
    pub fn open_backoff(mut self, backoff: OpenBackoff) -> Self {
        self.options.open_backoff = backoff;
        self
    }

    /// Counts each failed attempt a retry layer below makes, not only each
    /// call's outcome (see [`BreakerOptions::count_attempts`]).
    pub fn count_attempts(mut self, count: bool) -> Self {
        self.options.count_attempts = count;
        self
    }

    /// Lets a call that meets an open circuit wait up to `wait` for it to
    /// close instead of failing at once (see
    /// [`BreakerOptions::wait_while_open`]). Under a
    /// [`CircuitBreakerLayer`](super::CircuitBreakerLayer), the service's
    /// `poll_ready` stays pending while the call waits, as tower's own
    /// limits do; if the circuit is still open when the wait ends, the call
    /// fails with [`CircuitOpen`](super::CircuitOpen). Most useful with a
    /// [`health_probe`](Self::health_probe), which closes the circuit as soon
    /// as the provider is back.
    pub fn wait_while_open(mut self, wait: Duration) -> Self {
        self.options.wait_while_open = Some(wait);
        self
    }

    /// Checks the service's health by itself while the circuit is open, and
    /// closes it at the first healthy answer (see [`HealthProbe`]).
    pub fn health_probe(mut self, probe: HealthProbe) -> Self {
        self.health = Some(probe);
        self
    }

    /// Sets the policy, the slow-call rule and the open backoff at once, as
    /// [`HttpClientConfig::breaker`](crate::HttpClientConfig::breaker) holds
    /// them.
    pub fn options(mut self, options: BreakerOptions) -> Self {
        self.options = options;
        self
    }

    /// The config the breaker is built with.
    pub(super) fn config(&self) -> CircuitBreakerConfig {
        self.config
    }

    /// Names the breaker: with the feature `metrics`, its state, transitions
    /// and refusals are reported labelled `provider = name` (see
    /// [`telemetry`](crate::telemetry)).
    pub fn provider(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.meter = Meter::named(name.into());
        self
    }

    /// Checks every setting and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that breaks a rule: a field
    /// of the config (`failure_threshold`, `half_open_max_calls`), or
    /// `policy`, `slow_calls` or `open_backoff`, with the part in the rule
    /// (`failure_rate.threshold must be more than 0 and at most 1, got 1.5`).
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        super::policy::check_wait("wait_while_open", self.options.wait_while_open)?;
        if let Some(probe) = &self.health {
            probe.check(("health_probe.interval", "health_probe.timeout"))?;
        }
        let rules = Rules::new(
            &self.options.policy,
            self.options.slow_calls,
            self.options.open_backoff,
            self.config.timeout,
        )?;
        Ok(CircuitBreaker::build(
            self.config,
            self.meter,
            rules,
            Extras {
                count_attempts: self.options.count_attempts,
                health: self.health,
                patience: self.options.wait_while_open,
            },
        ))
    }
}
