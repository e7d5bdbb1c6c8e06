//! The breaker's own probe while its circuit is open: recovery noticed without
//! waiting for a caller's request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The future a [`HealthProbe`]'s check returns: `true` when the service
/// answered as a healthy one would.
pub type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A cheap request the breaker sends by itself, every `interval` while its
/// circuit is open, to learn that the service has recovered: the first check
/// that answers `true` closes the circuit, so calls flow again within about
/// one interval of the recovery, with no caller's request spent as a probe.
///
/// Set with [`CircuitBreakerBuilder::health_probe`](super::CircuitBreakerBuilder::health_probe);
/// [`HttpClient`](crate::HttpClient) makes one from
/// [`HealthCheck`](crate::client::HealthCheck) (for OpenAI's API, `GET
/// /models`). The checks run on a task spawned on the Tokio runtime the
/// circuit opened on (none without one), end when the circuit closes, and stop
/// for good when the last handle to the breaker is dropped. A check that takes
/// longer than its [`timeout`](Self::timeout) counts as failed. A circuit
/// forced open ([`CircuitBreaker::force_open`](super::CircuitBreaker::force_open)) stays open.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
/// use stache_resilience::circuit_breaker::{CircuitState, HealthProbe};
///
/// let probe = HealthProbe::new(Duration::from_secs(1), || Box::pin(async { true }));
/// let breaker = CircuitBreaker::builder(CircuitBreakerConfig {
///     failure_threshold: 1,
///     timeout: Duration::from_secs(60),
///     ..Default::default()
/// })
/// .health_probe(probe)
/// .build()
/// .expect("valid settings");
/// breaker.record_failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// tokio::time::sleep(Duration::from_millis(1100)).await;
/// assert_eq!(breaker.state(), CircuitState::Closed, "closed by the probe, not after 60 s");
/// # }
/// ```
#[derive(Clone)]
pub struct HealthProbe {
    interval: Duration,
    timeout: Duration,
    #[cfg_attr(loom, allow(dead_code))]
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl HealthProbe {
    /// Runs `check` every `interval` while the circuit is open, each given
    /// `interval` to answer (see [`timeout`](Self::timeout)).
    pub fn new<F>(interval: Duration, check: F) -> Self
    where
        F: Fn() -> CheckFuture + Send + Sync + 'static,
    {
        HealthProbe {
            interval,
            timeout: interval,
            check: Arc::new(check),
        }
    }

    /// Gives each check `timeout` to answer before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the check runs while the circuit is open.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Checks the interval and the timeout, named `names` in an error.
    pub(crate) fn check(
        &self,
        names: (&'static str, &'static str),
    ) -> Result<(), crate::error::ConfigError> {
        let fine = |d: Duration| d >= Duration::from_millis(1) && d <= Duration::from_secs(86_400);
        if !fine(self.interval) {
            return Err(crate::error::ConfigError::new(
                names.0,
                format!("must be between 1 ms and a day, got {:?}", self.interval),
            ));
        }
        if !fine(self.timeout) {
            return Err(crate::error::ConfigError::new(
                names.1,
                format!("must be between 1 ms and a day, got {:?}", self.timeout),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for HealthProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthProbe")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a breaker has beyond its config and rules; see
/// [`BreakerOptions`](super::BreakerOptions) and
/// [`CircuitBreakerBuilder`](super::CircuitBreakerBuilder).
#[derive(Default)]
pub(super) struct Extras {
    pub(super) count_attempts: bool,
    pub(super) health: Option<HealthProbe>,
    pub(super) patience: Option<Duration>,
}

impl HealthProbe {
    /// The check's interval and timeout, and the check itself.
    #[cfg_attr(loom, allow(dead_code))]
    pub(super) fn parts(
        &self,
    ) -> (
        Duration,
        Duration,
        &Arc<dyn Fn() -> CheckFuture + Send + Sync>,
    ) {
        (self.interval, self.timeout, &self.check)
    }
}
