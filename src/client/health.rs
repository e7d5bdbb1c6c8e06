//! The client's health check: a cheap request sent straight to the transport
//! while the provider's circuit is open, so that its recovery is noticed
//! without a caller's request.

use std::time::Duration;

use http::Method;
use tower::{Service, ServiceExt};

use super::headers::Templates;
use super::transport::{Outgoing, Transport};
use crate::circuit_breaker::HealthProbe;
use crate::classify::{Outcome, classify_response};
use crate::error::ConfigError;
use crate::request_id::RequestId;

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

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/')
            || http::uri::PathAndQuery::try_from(self.path.as_str()).is_err()
        {
            return Err(ConfigError::new(
                "health_check.path",
                format!("must be a path starting with `/`, got {:?}", self.path),
            ));
        }
        self.probe_with(|| Box::pin(async { false }))
            .check(("health_check.interval", "health_check.timeout"))
    }

    fn probe_with<F>(&self, check: F) -> HealthProbe
    where
        F: Fn() -> crate::circuit_breaker::CheckFuture + Send + Sync + 'static,
    {
        HealthProbe::new(self.interval, check).timeout(self.timeout)
    }

    /// The breaker's probe: the check sent through `transport`.
    pub(super) fn probe(
        &self,
        base: &str,
        templates: &Templates,
        transport: Transport,
    ) -> Result<HealthProbe, ConfigError> {
        let uri = http::Uri::try_from(format!("{base}{}", self.path)).map_err(|e| {
            ConfigError::new(
                "health_check.path",
                format!("does not form a valid URL with base_url: {e}"),
            )
        })?;
        let headers = templates.pick(false, false).clone();
        Ok(self.probe_with(move || {
            let mut transport = transport.clone();
            let outgoing = Outgoing {
                body: bytes::Bytes::new(),
                headers: headers.clone(),
                extra: None,
                id: RequestId::generate().header_value().clone(),
                idempotent: Some(true),
                post_is_idempotent: false,
            };
            let mut request = http::Request::new(outgoing);
            *request.method_mut() = Method::GET;
            *request.uri_mut() = uri.clone();
            Box::pin(async move {
                let Ok(ready) = transport.ready().await else {
                    return false;
                };
                let alive = match ready.call(request).await {
                    Ok(res) => matches!(
                        classify_response(res.status(), res.headers()),
                        Outcome::Success | Outcome::ClientError
                    ),
                    Err(_) => false,
                };
                tracing::debug!(alive, "health check of an open circuit");
                alive
            })
        }))
    }
}
