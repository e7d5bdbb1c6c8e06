//! [`Chaos`]: which faults to inject, how often, and from which seed.

use std::time::Duration;

use http::StatusCode;

use crate::error::ConfigError;

/// A fault [`Chaos`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The answer comes this much later (before sending: the request leaves
    /// later).
    Latency(Duration),
    /// An answer of this status, with `Retry-After` (in whole seconds) when
    /// given, in place of the service's; its body is empty.
    Status {
        /// The status answered.
        status: StatusCode,
        /// The wait the answer asks for.
        retry_after: Option<Duration>,
    },
    /// The connection is reset: an [`Injected`](super::Injected) error.
    Reset,
    /// No answer comes: after `after`, an [`Injected`](super::Injected)
    /// timeout. A shorter attempt timeout above the layer fires first, as it
    /// would for a real hang.
    Timeout {
        /// How long the attempt waits before failing.
        after: Duration,
    },
}

/// One fault, its rate, and whether it replaces the request or its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Injection {
    pub(super) rate: f64,
    pub(super) fault: Fault,
    /// Whether the request is sent first (the fault replaces the answer), or
    /// the fault takes the request's place (nothing is sent).
    pub(super) on_answer: bool,
}

impl PartialEq for Injection {
    fn eq(&self, other: &Self) -> bool {
        self.rate.to_bits() == other.rate.to_bits()
            && self.fault == other.fault
            && self.on_answer == other.on_answer
    }
}

impl Eq for Injection {}

/// Faults to inject, for tests and drills: at configured rates, from a seed
/// for a run that can be repeated. On [`ChaosLayer`](super::ChaosLayer) or
/// [`HttpClientConfig::chaos`](crate::HttpClientConfig::chaos); see the
/// [module documentation](super).
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::chaos::{Chaos, Fault};
/// use stache_resilience::http::StatusCode;
///
/// let chaos = Chaos::new()
///     .seed(7)
///     // 10% of requests never leave: the connection is reset.
///     .before(0.10, Fault::Reset)
///     // 5% are answered 503 with `Retry-After: 1` after the service acted.
///     .on_answer(0.05, Fault::Status { status: StatusCode::SERVICE_UNAVAILABLE, retry_after: Some(Duration::from_secs(1)) });
/// assert!(chaos.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chaos {
    pub(super) seed: Option<u64>,
    pub(super) injections: Vec<Injection>,
}

impl Chaos {
    /// No faults yet, and a random seed.
    pub fn new() -> Self {
        Chaos::default()
    }

    /// Draws from `seed`: the same calls, in the same order, meet the same
    /// faults in every run. Builder-style.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Injects `fault` in place of a share `rate` (0 to 1) of the requests:
    /// nothing is sent for them (a latency delays them instead).
    /// Builder-style.
    pub fn before(mut self, rate: f64, fault: Fault) -> Self {
        self.injections.push(Injection {
            rate,
            fault,
            on_answer: false,
        });
        self
    }

    /// Injects `fault` in place of the answer to a share `rate` of the
    /// requests: they reach the service, which may act on them, and their
    /// answer is dropped (a latency delays it instead). Builder-style.
    pub fn on_answer(mut self, rate: f64, fault: Fault) -> Self {
        self.injections.push(Injection {
            rate,
            fault,
            on_answer: true,
        });
        self
    }

    /// Checks the rules: each rate between 0 and 1 and all of them together
    /// at most 1; a status fault's status 400 or more; durations at most a
    /// day. The error names the field (`chaos.rate`, …).
    pub fn validate(&self) -> Result<(), ConfigError> {
        const DAY: Duration = Duration::from_secs(86_400);
        let mut total = 0.0;
        for injection in &self.injections {
            if !(0.0..=1.0).contains(&injection.rate) {
                return Err(ConfigError::new(
                    "chaos.rate",
                    "each rate must be between 0 and 1",
                ));
            }
            total += injection.rate;
            match injection.fault {
                Fault::Status { status, .. } if status.as_u16() < 400 => {
                    return Err(ConfigError::new(
                        "chaos.status",
                        "an injected status must be 400 or more",
                    ));
                }
                Fault::Status {
                    retry_after: Some(d),
                    ..
                }
                | Fault::Latency(d)
                | Fault::Timeout { after: d }
                    if d > DAY =>
                {
                    return Err(ConfigError::new(
                        "chaos.duration",
                        "an injected duration must be at most a day",
                    ));
                }
                _ => {}
            }
        }
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "chaos.rate",
                "the rates together must be at most 1",
            ));
        }
        Ok(())
    }
}
