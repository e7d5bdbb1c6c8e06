//! [`RateLimit`]: a provider's limits as the application knows them.

use std::time::Duration;

use crate::error::ConfigError;

/// The limits a provider sets, for [`HttpClientConfig::rate_limit`](crate::HttpClientConfig::rate_limit)
/// or [`RateLimiter::with_limit`](super::RateLimiter::with_limit): requests per
/// minute, tokens per minute, or both.
///
/// Requests are spaced evenly (`60 s / requests_per_minute` apart, plus 2%
/// without a burst, so that the varying delay between a call's start and its
/// arrival does not bring two calls closer than a provider enforcing the same
/// limit allows), with up to `burst` of them back to back. A call's tokens, declared with
/// [`RequestBuilder::cost`](crate::client::RequestBuilder::cost) (or a
/// [`Cost`](super::Cost) extension), are charged as it starts: the next call
/// starts once the tokens already sent have been earned back at
/// `tokens_per_minute`, so over any minute at most `tokens_per_minute` plus one
/// call's tokens go out. Calls wait their turn first come, first served.
///
/// ```
/// use stache_resilience::rate_limit::RateLimit;
///
/// // OpenAI's tier-1 embeddings: 3,000 requests and 1,000,000 tokens a minute.
/// let limit = RateLimit::per_minute(3_000).tokens_per_minute(1_000_000).burst(10);
/// assert!(limit.validate().is_ok());
/// assert_eq!(limit.interval(), Some(std::time::Duration::from_millis(20)));
/// ```
///
/// In a settings file, under `[rate_limit]`: `requests_per_minute`,
/// `tokens_per_minute`, `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct RateLimit {
    /// Requests a minute; `None` leaves requests unlimited (tokens alone).
    #[cfg_attr(feature = "serde", serde(default))]
    pub requests_per_minute: Option<u32>,
    /// Tokens a minute, counted from each call's declared cost; `None` counts
    /// no tokens.
    #[cfg_attr(feature = "serde", serde(default))]
    pub tokens_per_minute: Option<u32>,
    /// Requests that may go back to back before the spacing applies; at
    /// least 1 (the default: evenly spaced).
    #[cfg_attr(feature = "serde", serde(default = "one"))]
    pub burst: u32,
}

#[cfg(feature = "serde")]
fn one() -> u32 {
    1
}

impl RateLimit {
    /// A limit of `requests` a minute, no token limit, no burst.
    pub const fn per_minute(requests: u32) -> Self {
        RateLimit {
            requests_per_minute: Some(requests),
            tokens_per_minute: None,
            burst: 1,
        }
    }

    /// A limit of `tokens` a minute alone, no request limit.
    pub const fn tokens_only(tokens: u32) -> Self {
        RateLimit {
            requests_per_minute: None,
            tokens_per_minute: Some(tokens),
            burst: 1,
        }
    }

    /// Adds a limit of `tokens` a minute; builder-style.
    pub const fn tokens_per_minute(mut self, tokens: u32) -> Self {
        self.tokens_per_minute = Some(tokens);
        self
    }

    /// Lets `requests` go back to back; builder-style.
    pub const fn burst(mut self, requests: u32) -> Self {
        self.burst = requests;
        self
    }

    /// The spacing of requests, `60 s / requests_per_minute`, if they are limited.
    pub fn interval(&self) -> Option<Duration> {
        self.requests_per_minute
            .filter(|n| *n > 0)
            .map(|n| Duration::from_secs(60) / n)
    }

    /// A copy with every limit divided by `share` (at least 1 a minute): one
    /// process's part of a limit that `share` processes split.
    pub fn divided(&self, share: u32) -> RateLimit {
        let share = share.max(1);
        RateLimit {
            requests_per_minute: self.requests_per_minute.map(|n| (n / share).max(1)),
            tokens_per_minute: self.tokens_per_minute.map(|n| (n / share).max(1)),
            burst: (self.burst / share).max(1),
        }
    }

    /// Checks the rules: at least one limit, each at least 1, `burst` at least
    /// 1. The error names the field (`rate_limit.burst`, …).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.requests_per_minute.is_none() && self.tokens_per_minute.is_none() {
            return Err(ConfigError::new(
                "rate_limit",
                "set requests_per_minute, tokens_per_minute or both",
            ));
        }
        if self.requests_per_minute == Some(0) {
            return Err(ConfigError::new(
                "rate_limit.requests_per_minute",
                "must be at least 1",
            ));
        }
        if self.tokens_per_minute == Some(0) {
            return Err(ConfigError::new(
                "rate_limit.tokens_per_minute",
                "must be at least 1",
            ));
        }
        if self.burst == 0 {
            return Err(ConfigError::new("rate_limit.burst", "must be at least 1"));
        }
        Ok(())
    }
}
