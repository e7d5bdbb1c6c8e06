//! `HttpClientConfig` from a settings file (feature `serde`): TOML or JSON,
//! durations in seconds, unknown fields rejected.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::HttpClientConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default, with = "crate::serde_secs::option")]
    default_timeout: Option<Duration>,
    #[serde(default, with = "crate::serde_secs::option")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "crate::serde_secs::option")]
    write_timeout: Option<Duration>,
    #[serde(default, with = "crate::serde_secs::option")]
    pool_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_keepalive_connections: Option<usize>,
    #[serde(default, with = "crate::serde_secs::option")]
    keepalive_expiry: Option<Duration>,
    max_retries: Option<u32>,
    #[serde(default, with = "crate::serde_secs::option")]
    retry_base_delay: Option<Duration>,
    #[serde(default, with = "crate::serde_secs::option")]
    retry_max_delay: Option<Duration>,
    circuit_breaker_threshold: Option<u32>,
    #[serde(default, with = "crate::serde_secs::option")]
    circuit_breaker_timeout: Option<Duration>,
    circuit_breaker_half_open_max_calls: Option<u32>,
    retry: Option<crate::retry::RetryOptions>,
    breaker: Option<crate::circuit_breaker::BreakerOptions>,
    max_response_bytes: Option<usize>,
    #[serde(default, with = "crate::serde_secs::option")]
    stream_idle_timeout: Option<Duration>,
    max_line_bytes: Option<usize>,
    max_stream_bytes: Option<u64>,
    stream: Option<crate::read_ahead::StreamOptions>,
    post_is_idempotent: Option<bool>,
    rate_limit_per_model: Option<bool>,
    breaker_per_model: Option<bool>,
    idempotency_key: Option<String>,
    user_agent: Option<String>,
    http_version: Option<super::HttpVersion>,
    #[serde(default, with = "crate::serde_secs::option")]
    http2_keep_alive_interval: Option<Duration>,
    #[serde(default, with = "crate::serde_secs::option")]
    http2_keep_alive_timeout: Option<Duration>,
    rate_limit: Option<crate::rate_limit::RateLimit>,
    health_check: Option<super::HealthCheck>,
    cold_start: Option<crate::rate_limit::ColdStart>,
    #[cfg(feature = "redis")]
    fleet: Option<crate::rate_limit::Fleet>,
}

impl<'de> Deserialize<'de> for HttpClientConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(deserializer)?;
        let mut config = HttpClientConfig::new(raw.base_url);
        for (name, value) in raw.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| D::Error::custom(format_args!("headers: {name:?}: {e}")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| D::Error::custom(format_args!("headers: {name}: {e}")))?;
            config = config.header(name, value);
        }
        config.http2_keep_alive_interval = raw.http2_keep_alive_interval;
        config.rate_limit = raw.rate_limit;
        config.health_check = raw.health_check;
        config.cold_start = raw.cold_start;
        #[cfg(feature = "redis")]
        {
            config.fleet = raw.fleet;
        }
        if let Some(name) = raw.idempotency_key {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| D::Error::custom(format_args!("idempotency_key: {name:?}: {e}")))?;
            config.idempotency_key = Some(name);
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = raw.$field {
                    config.$field = value;
                }
            )*};
        }
        set!(
            default_timeout,
            connect_timeout,
            write_timeout,
            pool_timeout,
            max_connections,
            max_keepalive_connections,
            keepalive_expiry,
            max_retries,
            retry_base_delay,
            retry_max_delay,
            circuit_breaker_threshold,
            circuit_breaker_timeout,
            circuit_breaker_half_open_max_calls,
            retry,
            breaker,
            max_response_bytes,
            stream_idle_timeout,
            max_line_bytes,
            max_stream_bytes,
            stream,
            post_is_idempotent,
            rate_limit_per_model,
            breaker_per_model,
            user_agent,
            http_version,
            http2_keep_alive_timeout
        );
        Ok(config)
    }
}
