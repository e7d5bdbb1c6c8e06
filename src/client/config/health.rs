//! [`HealthCheck`]: the request an [`HttpClient`](crate::HttpClient) checks
//! its provider with while the circuit is open (the probe itself is built in
//! the client's `health` module).

use std::time::Duration;

use crate::circuit_breaker::HealthProbe;
use crate::error::ConfigError;

/// How an [`HttpClient`](crate::HttpClient) checks its provider while the
/// circuit is open: a `GET` of `path` (after `base_url`, as a call's
/// endpoint is), with the client's headers, every `interval`. An answer
/// that shows the provider alive (a 2xx, or a 4xx other than 408 and 429:
/// a provider that refuses the check is up) closes the circuit; a 5xx, a
/// 408 or 429, a transport error or no answer within `timeout` leaves it
/// open. The checks bypass the retry layer, the rate limiter and the pool's
/// slots.
///
/// The [`openai`](crate::HttpClientConfig::openai) and
/// [`anthropic`](crate::HttpClientConfig::anthropic) presets check
/// `GET /models` every second; in a settings file:
///
/// ```toml
/// [providers.vllm.health_check]
/// path = "/health"
/// interval = 2
/// timeout = 1
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct HealthCheck {
    /// The endpoint checked, e.g. `/models`.
    pub path: String,
    /// How often the check runs while the circuit is open.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub interval: Duration,
    /// How long one check may take.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub timeout: Duration,
}

impl HealthCheck {
    /// A `GET` of `path` every second, each given two seconds.
    pub fn get(path: impl Into<String>) -> Self {
        HealthCheck {
            path: path.into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/')
            || http::uri::PathAndQuery::try_from(self.path.as_str()).is_err()
        {
            return Err(ConfigError::new(
                "health_check.path",
                format!("must be a path starting with `/`, got {:?}", self.path),
            ));
        }
        HealthProbe::new(self.interval, || Box::pin(async { false }))
            .timeout(self.timeout)
            .check(("health_check.interval", "health_check.timeout"))
    }
}
