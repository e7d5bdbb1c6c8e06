//! Fleet mode (feature `redis`): the configured limits kept in Redis, shared
//! by every process; the rules are in the [parent module's documentation](super).

mod store;

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

pub(crate) use self::store::FleetStore;

#[cfg(doc)]
use super::RateLimit;

/// The longest [`Fleet::acquire_timeout`]: a limiter that waits longer for
/// Redis than this has put it on the critical path.
const MAX_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest [`Fleet::probe_interval`] (a year), as for every duration of
/// the client's settings.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

/// Where a fleet's shared budget lives, and what each process does without
/// it; for [`HttpClientConfig::fleet`](crate::HttpClientConfig::fleet) or
/// [`RateLimiter::with_fleet`](super::RateLimiter::with_fleet). See the
/// [module documentation](super#fleet-mode-feature-redis).
///
/// In a settings file, under `[fleet]`: `redis_url`, `fleet_size`,
/// `acquire_timeout` and `probe_interval` (seconds), `namespace`.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct Fleet {
    /// The Redis server: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS. Its user name and password never reach a log.
    pub redis_url: String,
    /// How many processes share the quota: without Redis, each keeps to
    /// `limit / fleet_size`. 1 by default.
    #[cfg_attr(feature = "serde", serde(default = "defaults::fleet_size"))]
    pub fleet_size: u32,
    /// The longest a call waits for Redis to reserve its start (50 ms by
    /// default); past it, the call is limited in the process.
    #[cfg_attr(
        feature = "serde",
        serde(default = "defaults::acquire_timeout", with = "crate::serde_secs")
    )]
    pub acquire_timeout: Duration,
    /// How often, while Redis is unreachable, one call asks it again (1 s by
    /// default).
    #[cfg_attr(
        feature = "serde",
        serde(default = "defaults::probe_interval", with = "crate::serde_secs")
    )]
    pub probe_interval: Duration,
    /// The name the budget is kept under, before the API key's hash; the
    /// provider's name (from
    /// [`HttpClient::for_provider`](crate::HttpClient::for_provider)) when
    /// `None`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub namespace: Option<String>,
}

mod defaults {
    use std::time::Duration;

    pub(super) const fn fleet_size() -> u32 {
        1
    }

    pub(super) const fn acquire_timeout() -> Duration {
        Duration::from_millis(50)
    }

    pub(super) const fn probe_interval() -> Duration {
        Duration::from_secs(1)
    }
}

impl Fleet {
    /// A fleet whose budget lives at `redis_url`, every other field at its
    /// default.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Fleet {
            redis_url: redis_url.into(),
            fleet_size: defaults::fleet_size(),
            acquire_timeout: defaults::acquire_timeout(),
            probe_interval: defaults::probe_interval(),
            namespace: None,
        }
    }

    /// Sets how many processes share the quota; builder-style.
    pub fn fleet_size(mut self, processes: u32) -> Self {
        self.fleet_size = processes;
        self
    }

    /// Sets the longest a call waits for Redis; builder-style.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets how often an unreachable Redis is asked again; builder-style.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Sets the name the budget is kept under; builder-style.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Checks the rules: a Redis URL the client can read, `fleet_size` at
    /// least 1, `acquire_timeout` above zero and at most 5 s,
    /// `probe_interval` above zero. The error names the field
    /// (`fleet.redis_url`, …) and never repeats the URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            return Err(ConfigError::new(
                "fleet.redis_url",
                format!("not a Redis URL the client can use ({:?})", e.kind()),
            ));
        }
        if self.fleet_size == 0 {
            return Err(ConfigError::new("fleet.fleet_size", "must be at least 1"));
        }
        if self.acquire_timeout.is_zero() || self.acquire_timeout > MAX_ACQUIRE_TIMEOUT {
            return Err(ConfigError::new(
                "fleet.acquire_timeout",
                "must be above zero and at most 5 s",
            ));
        }
        if self.probe_interval.is_zero() || self.probe_interval > MAX_PROBE_INTERVAL {
            return Err(ConfigError::new(
                "fleet.probe_interval",
                "must be above zero and at most a year",
            ));
        }
        if self.namespace.as_deref() == Some("") {
            return Err(ConfigError::new("fleet.namespace", "must not be empty"));
        }
        Ok(())
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("redis_url", &RedactedRedisUrl(&self.redis_url))
            .field("fleet_size", &self.fleet_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("probe_interval", &self.probe_interval)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// A Redis URL without its user name, password and query (which may carry a
/// password too).
pub(crate) struct RedactedRedisUrl<'a>(pub(crate) &'a str);

impl fmt::Debug for RedactedRedisUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RedactedRedisUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0.split(['?', '#']).next().unwrap_or_default();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let host = match authority.rsplit_once('@') {
            Some((_, host)) => host,
            None => authority,
        };
        if !scheme.is_empty() {
            write!(f, "{scheme}://")?;
        }
        if authority.contains('@') {
            f.write_str("[redacted]@")?;
        }
        write!(f, "{host}{path}")?;
        if url.len() < self.0.len() {
            f.write_str("?[redacted]")?;
        }
        Ok(())
    }
}

/// How a fleet's shared budget is doing; in
/// [`RateLimitStats::fleet`](super::RateLimitStats::fleet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FleetStats {
    /// Starts reserved in Redis.
    pub shared: u64,
    /// Starts reserved in the process, at `limit / fleet_size`, because Redis
    /// did not answer in time.
    pub local: u64,
    /// Times Redis was found unreachable after answering (or before its first
    /// answer).
    pub outages: u64,
    /// Whether calls are limited in the process now.
    pub on_fallback: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_lose_their_credentials_in_debug_output() {
        let fleet = Fleet::new("redis://app:s3cret@10.0.0.5:6379/2?password=other");
        let text = format!("{fleet:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("other"),
            "{text}"
        );
        assert!(
            text.contains("redis://[redacted]@10.0.0.5:6379/2?[redacted]"),
            "{text}"
        );
        let plain = format!("{}", RedactedRedisUrl("redis://127.0.0.1:6379"));
        assert_eq!(plain, "redis://127.0.0.1:6379");
        let bare = format!("{}", RedactedRedisUrl(":pw@host"));
        assert_eq!(bare, "[redacted]@host");
    }

    #[test]
    fn validation_names_each_field() {
        let ok = Fleet::new("redis://127.0.0.1:6379");
        assert!(ok.validate().is_ok());
        let cases = [
            (Fleet::new("http://127.0.0.1"), "fleet.redis_url"),
            (Fleet::new("redis://h:1").fleet_size(0), "fleet.fleet_size"),
            (
                Fleet::new("redis://h:1").acquire_timeout(Duration::ZERO),
                "fleet.acquire_timeout",
            ),
            (
                Fleet::new("redis://h:1").acquire_timeout(Duration::from_secs(6)),
                "fleet.acquire_timeout",
            ),
            (
                Fleet::new("redis://h:1").probe_interval(Duration::ZERO),
                "fleet.probe_interval",
            ),
            (Fleet::new("redis://h:1").namespace(""), "fleet.namespace"),
        ];
        for (fleet, field) in cases {
            let err = fleet.validate().unwrap_err();
            assert_eq!(err.field(), field, "{fleet:?}");
        }
        let err = Fleet::new("redis://u:pw@[bad").validate().unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
