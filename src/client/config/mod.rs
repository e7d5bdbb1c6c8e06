//! [`HttpClientConfig`]: every setting of one provider's client, with validation.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::circuit_breaker::{
    BreakerOptions, CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerConfig,
};
use crate::error::ConfigError;
use crate::rate_limit::RateLimit;
use crate::read_ahead::StreamOptions;
use crate::redact::{Redacted, is_sensitive};
use crate::retry::{RetryConfig, RetryOptions};

/// The settings of one provider's [`HttpClient`](crate::HttpClient).
///
/// [`HttpClientConfig::new`] fills in the defaults below; change the public
/// fields as needed. Nothing is checked until a client is built, when
/// [`validate`](Self::validate) reports the first field that breaks a rule.
///
/// | field | default |
/// | --- | --- |
/// | `base_url` | required: absolute `http://` or `https://` URL with a host |
/// | `headers` | empty (sent on every request, e.g. `Authorization`) |
/// | `default_timeout` | 60 s per attempt, reading the body included |
/// | `connect_timeout` | 10 s (TCP connect and TLS handshake) |
/// | `write_timeout` | 10 s (a write to the socket that makes no progress; over HTTP/2, a request body the server grants no window) |
/// | `pool_timeout` | 5 s (waiting for a free connection slot; over HTTP/2, a request with a body waiting for a stream slot) |
/// | `max_connections` | 50 requests in flight at once |
/// | `max_keepalive_connections` | 20 idle connections kept |
/// | `keepalive_expiry` | 30 s before an idle connection is closed |
/// | `max_retries` | 3 |
/// | `retry_base_delay` | 1 s |
/// | `retry_max_delay` | 10 s |
/// | `circuit_breaker_threshold` | 15 consecutive failed calls |
/// | `circuit_breaker_timeout` | 60 s |
/// | `circuit_breaker_half_open_max_calls` | 3 |
/// | `retry` | [`RetryOptions`]: ±50% jitter, no `total_timeout` (a bound on the whole call, retries, waits and a stream's lines included), the retry budget on (retries add at most 20% + 10/s) |
/// | `breaker` | [`BreakerOptions`]: open after `circuit_breaker_threshold` failures in a row, no slow calls, always open for `circuit_breaker_timeout` |
/// | `max_response_bytes` | 32 MiB for a buffered body |
/// | `stream_idle_timeout` | 60 s between chunks of a stream |
/// | `max_line_bytes` | 8 MiB for one NDJSON line (blank lines before it included) |
/// | `max_stream_bytes` | 1 GiB for a whole stream |
/// | `stream` | [`StreamOptions`]: no dialect, no first-token limit |
/// | `post_is_idempotent` | `true`: POST and PATCH calls are safe to repeat |
/// | `idempotency_key` | none (e.g. `Idempotency-Key`: a random key on every non-GET call) |
/// | `user_agent` | `stache-resilience/<version>` |
/// | `extra_root_certificates` | none (PEM or DER, trusted besides the webpki roots) |
/// | `http_version` | [`HttpVersion::Auto`]: HTTP/2 where TLS offers it, else HTTP/1.1 |
/// | `http2_keep_alive_interval` | none: idle HTTP/2 connections are not pinged |
/// | `http2_keep_alive_timeout` | 20 s for a ping's answer before the connection is dropped |
///
/// # Debug and logs
///
/// `Debug` prints the values of sensitive headers (any whose name contains
/// `auth`, `key`, `token`, `secret`, `password`, `session`, `cookie` or
/// `signature`) as `[redacted]`; the client never logs header values, and logs
/// URIs with their query values redacted. A `base_url` with a user name or
/// password is refused by `validate`.
///
/// # From a settings file
///
/// With the `serde` feature a config deserializes from TOML or JSON, durations in
/// (fractional) seconds, unknown fields rejected:
///
/// ```toml
/// [providers.ollama]
/// base_url = "http://localhost:11434"
/// default_timeout = 90.0
/// circuit_breaker_threshold = 15
/// headers = { "x-tenant" = "acme" }
///
/// [providers.openai]
/// base_url = "https://api.openai.com/v1"
///
/// [providers.openai.retry]
/// jitter = "full"
/// total_timeout = 120.0
///
/// [providers.openai.breaker]
/// # "consecutive" (the default), a failure_rate table, or
/// # { either = ["consecutive", { failure_rate = { ... } }] }
/// policy = { failure_rate = { threshold = 0.5, minimum_calls = 100, window = 30 } }
/// slow_calls = { threshold = 20, rate = 0.5 }
/// open_backoff = { exponential = { max = 600, jitter = 0.2 } }
/// ```
///
/// # Fields
///
/// The original design's settings are fields of their own, under their
/// names there (the contract with code ported from it). Every setting of a
/// layer beyond them sits in one field holding that layer's own type:
/// [`retry`](Self::retry) ([`RetryOptions`]) and [`breaker`](Self::breaker)
/// ([`BreakerOptions`]), [`stream`](Self::stream) ([`StreamOptions`]), as
/// well as `rate_limit`, `fleet`, `chaos` and `hedge`. The rest are the client's own (its transport and its streams).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::HttpClientConfig;
///
/// let mut config = HttpClientConfig::new("https://api.example.com/v1");
/// config.default_timeout = Duration::from_secs(30);
/// config.max_connections = 0;
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.field(), "max_connections");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// Base URL that endpoints are appended to, e.g. `https://api.mixedbread.com/v1`.
    pub base_url: String,
    /// Headers sent on every request.
    pub headers: HeaderMap,
    /// Deadline of each attempt, reading a buffered body included.
    pub default_timeout: Duration,
    /// Deadline for the TCP connect and the TLS handshake.
    pub connect_timeout: Duration,
    /// Deadline for a socket write that makes no progress (a peer that stops
    /// reading).
    pub write_timeout: Duration,
    /// How long a call waits for a free connection slot.
    pub pool_timeout: Duration,
    /// Requests in flight at once for this provider.
    pub max_connections: usize,
    /// Idle connections kept open for reuse.
    pub max_keepalive_connections: usize,
    /// How long an idle connection is kept.
    pub keepalive_expiry: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry (before jitter).
    pub retry_base_delay: Duration,
    /// Cap on any backoff delay, and on the `Retry-After` the client will wait.
    pub retry_max_delay: Duration,
    /// Consecutive failed calls that open the circuit.
    pub circuit_breaker_threshold: u32,
    /// Time the circuit stays open before test calls.
    pub circuit_breaker_timeout: Duration,
    /// Test calls in half-open state.
    pub circuit_breaker_half_open_max_calls: u32,
    /// The retries' settings beyond the three above: jitter, a bound on the
    /// whole call (`total_timeout`: every attempt, every backoff and
    /// `Retry-After` wait, and for a stream every line until the last; a
    /// call's [`deadline`](crate::client::RequestBuilder::deadline) overrides
    /// it), and the retry budget.
    pub retry: RetryOptions,
    /// The breaker's settings beyond the three above: when the closed circuit
    /// opens (see [the breaker's module](crate::circuit_breaker#choosing-a-trip-policy)),
    /// which calls count as slow (a call's time is the whole call, retries
    /// and their waits included: see [`CircuitBreakerBuilder::slow_calls`]),
    /// and how long it stays open each time.
    pub breaker: BreakerOptions,
    /// Largest buffered response body; larger bodies fail with a body error.
    pub max_response_bytes: usize,
    /// Longest wait for the next chunk of a streamed response (with a
    /// stream dialect, for the next content event).
    pub stream_idle_timeout: Duration,
    /// Longest NDJSON line a stream will buffer; the blank lines before a line
    /// count towards it.
    pub max_line_bytes: usize,
    /// Most bytes one stream may deliver in all.
    pub max_stream_bytes: u64,
    /// How streams are read beyond the three limits above ([`StreamOptions`]):
    /// their dialect (content, in-band errors, the end marker, the model and
    /// usage) and a first-token limit. None by default; the presets set them.
    pub stream: StreamOptions,
    /// Whether POST and PATCH calls are safe to repeat (default `true`: provider
    /// calls such as embeddings and generations are). When `false`, such a call
    /// is retried only when the server provably did not act on it. A call's
    /// [`idempotent`](crate::client::RequestBuilder::idempotent) overrides it.
    pub post_is_idempotent: bool,
    /// A header that carries a random key on every non-GET call, the same on all
    /// of its attempts, for servers that deduplicate (default `None`).
    pub idempotency_key: Option<HeaderName>,
    /// The `User-Agent` header, unless `headers` sets one.
    pub user_agent: String,
    /// Extra trusted root certificates, PEM or DER (`https` only).
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// The HTTP versions spoken; see [`HttpVersion`]. Over HTTP/2 many requests
    /// share one connection, and `max_connections` still bounds the requests in
    /// flight.
    pub http_version: HttpVersion,
    /// How often an HTTP/2 connection is pinged to check it is alive; none
    /// by default.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long a ping may go unanswered before its connection is closed.
    pub http2_keep_alive_timeout: Duration,
    /// The provider's limits, if the application knows them: calls wait their
    /// turn (bounded by their deadline, else `retry_max_delay`), and a call
    /// that cannot fit fails at once with
    /// [`Error::is_rate_limited`](crate::Error::is_rate_limited). Without one,
    /// the client still closes a gate after a throttled answer and learns a
    /// pace (see [`rate_limit`](crate::rate_limit)). None by default.
    pub rate_limit: Option<RateLimit>,
    /// Lets few attempts out at once while the provider's limit is unknown,
    /// and more as answers succeed ([`ColdStart`](crate::rate_limit::ColdStart)),
    /// so that a cold burst against a rate limit costs close to one attempt
    /// per call. None by default (the original design: nothing held back
    /// before the first throttled answer); 2 growing to 64 in the `openai`
    /// and `anthropic` presets.
    pub cold_start: Option<crate::rate_limit::ColdStart>,
    /// Keeps the rate limiter's gate and learned pace apart for each model a
    /// call names (the `model` field of its JSON body, or
    /// [`RequestBuilder::model`](crate::client::RequestBuilder::model)): a
    /// `429` for one model then holds back calls to that model alone (see
    /// [`RateLimiter::per_model`](crate::rate_limit::RateLimiter::per_model)).
    /// False by default (the original design: one gate per client); true in
    /// the `openai` and `anthropic` presets.
    pub rate_limit_per_model: bool,
    /// Keeps a circuit breaker per model a call names (as
    /// `rate_limit_per_model` reads it), each as the client's breaker is
    /// configured: a model that fails opens its own circuit, and the calls
    /// to the others flow. Calls that name no model share the client's
    /// breaker. False by default (the original design: one breaker per
    /// client); true in the `openai` and `anthropic` presets. See
    /// [`HttpClient::model_circuit_breaker`](crate::HttpClient::model_circuit_breaker).
    pub breaker_per_model: bool,
    /// Keeps `rate_limit` in Redis, shared by every process calling the same
    /// provider with the same key (feature `redis`; see
    /// [fleet mode](crate::rate_limit#fleet-mode-feature-redis)). Needs
    /// `rate_limit`. None by default.
    #[cfg(feature = "redis")]
    pub fleet: Option<crate::rate_limit::Fleet>,
    /// Faults to inject, for tests and drills (see [`chaos`](crate::chaos));
    /// None by default, and then nothing is injected.
    pub chaos: Option<crate::chaos::Chaos>,
    /// Sends a second copy of a slow idempotent call and keeps the first
    /// answer ([`Hedge`](crate::hedge::Hedge)); never for streams. None by
    /// default.
    pub hedge: Option<crate::hedge::Hedge>,
    /// While the circuit is open, checks the provider by itself and closes
    /// the circuit at the first healthy answer
    /// ([`HealthCheck`](crate::client::HealthCheck)). None by default (the
    /// original design: recovery is noticed by a caller's half-open probe);
    /// `GET /models` every second in the `openai` and `anthropic` presets.
    pub health_check: Option<HealthCheck>,
    /// Set by a preset whose API key cannot be a header value; reported by
    /// `validate` rather than panicking in the preset.
    pub(super) invalid_api_key: bool,
}

/// The longest duration any setting may have (a year): larger values are
/// mistakes, and some overflow the clock arithmetic below.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The most retries a client may be configured with.
const MAX_RETRIES: u32 = 100;

impl HttpClientConfig {
    /// A config for `base_url` with every other field at its default.
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpClientConfig {
            base_url: base_url.into(),
            headers: HeaderMap::new(),
            default_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            pool_timeout: Duration::from_secs(5),
            max_connections: 50,
            max_keepalive_connections: 20,
            keepalive_expiry: Duration::from_secs(30),
            max_retries: 3,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(10),
            circuit_breaker_threshold: 15,
            circuit_breaker_timeout: Duration::from_secs(60),
            circuit_breaker_half_open_max_calls: 3,
            retry: RetryOptions::default(),
            breaker: BreakerOptions::default(),
            max_response_bytes: 32 * 1024 * 1024,
            stream_idle_timeout: Duration::from_secs(60),
            max_line_bytes: 8 * 1024 * 1024,
            max_stream_bytes: 1 << 30,
            stream: StreamOptions::default(),
            post_is_idempotent: true,
            idempotency_key: None,
            user_agent: concat!("stache-resilience/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_root_certificates: Vec::new(),
            http_version: HttpVersion::Auto,
            http2_keep_alive_interval: None,
            http2_keep_alive_timeout: Duration::from_secs(20),
            rate_limit: None,
            cold_start: None,
            rate_limit_per_model: false,
            breaker_per_model: false,
            #[cfg(feature = "redis")]
            fleet: None,
            chaos: None,
            hedge: None,
            health_check: None,
            invalid_api_key: false,
        }
    }

    /// Adds a header sent on every request; builder-style.
    ///
    /// Sensitive headers are marked so that `http`'s own `Debug` hides them too.
    pub fn header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        if is_sensitive(&name) {
            value.set_sensitive(true);
        }
        self.headers.append(name, value);
        self
    }

    /// Checks every rule, naming the first field that breaks one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.base_uri()?;
        if self.invalid_api_key {
            return Err(ConfigError::new(
                "headers",
                "the API key cannot be sent as a header value",
            ));
        }
        self.check_durations()?;
        self.check_counts()?;
        self.check_layers()
    }

    /// Every duration: none zero where zero means nothing, none over a year.
    fn check_durations(&self) -> Result<(), ConfigError> {
        let timeouts = [
            ("default_timeout", Some(self.default_timeout)),
            ("retry.total_timeout", self.retry.total_timeout),
            ("connect_timeout", Some(self.connect_timeout)),
            ("write_timeout", Some(self.write_timeout)),
            ("pool_timeout", Some(self.pool_timeout)),
            (
                "circuit_breaker_timeout",
                Some(self.circuit_breaker_timeout),
            ),
            ("stream_idle_timeout", Some(self.stream_idle_timeout)),
            (
                "stream.first_token_timeout",
                self.stream.first_token_timeout,
            ),
            ("http2_keep_alive_interval", self.http2_keep_alive_interval),
            (
                "http2_keep_alive_timeout",
                Some(self.http2_keep_alive_timeout),
            ),
        ];
        for (field, value) in timeouts {
            if value.is_some_and(|v| v.is_zero()) {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        let durations = timeouts.into_iter().chain([
            ("keepalive_expiry", Some(self.keepalive_expiry)),
            ("retry_base_delay", Some(self.retry_base_delay)),
            ("retry_max_delay", Some(self.retry_max_delay)),
        ]);
        for (field, value) in durations {
            if value.is_some_and(|v| v > MAX_DURATION) {
                return Err(ConfigError::new(
                    field,
                    format!("must be at most {} days", MAX_DURATION.as_secs() / 86_400),
                ));
            }
        }
        Ok(())
    }

    /// The counts, limits and the breaker's rules.
    fn check_counts(&self) -> Result<(), ConfigError> {
        if self.max_retries > MAX_RETRIES {
            return Err(ConfigError::new(
                "max_retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be at least 1"));
        }
        if self.max_keepalive_connections > self.max_connections {
            return Err(ConfigError::new(
                "max_keepalive_connections",
                format!(
                    "must not exceed max_connections ({} > {})",
                    self.max_keepalive_connections, self.max_connections
                ),
            ));
        }
        if self.retry_base_delay > self.retry_max_delay {
            return Err(ConfigError::new(
                "retry_base_delay",
                format!(
                    "must not exceed retry_max_delay ({:?} > {:?})",
                    self.retry_base_delay, self.retry_max_delay
                ),
            ));
        }
        if self.circuit_breaker_threshold == 0 {
            return Err(ConfigError::new(
                "circuit_breaker_threshold",
                "must be at least 1",
            ));
        }
        if self.circuit_breaker_half_open_max_calls == 0 {
            return Err(ConfigError::new(
                "circuit_breaker_half_open_max_calls",
                "must be at least 1",
            ));
        }
        self.breaker.check(self.circuit_breaker_timeout)?;
        if self.max_response_bytes == 0 {
            return Err(ConfigError::new("max_response_bytes", "must be at least 1"));
        }
        if self.max_line_bytes == 0 {
            return Err(ConfigError::new("max_line_bytes", "must be at least 1"));
        }
        if self.max_stream_bytes == 0 {
            return Err(ConfigError::new("max_stream_bytes", "must be at least 1"));
        }
        if HeaderValue::try_from(self.user_agent.as_str()).is_err() {
            return Err(ConfigError::new(
                "user_agent",
                "must be a valid header value",
            ));
        }
        Ok(())
    }

    /// The settings of the optional layers.
    fn check_layers(&self) -> Result<(), ConfigError> {
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet {
            if self.rate_limit.is_none() {
                return Err(ConfigError::new(
                    "fleet",
                    "needs rate_limit: the limit the fleet shares",
                ));
            }
            fleet.validate()?;
        }
        if let Some(chaos) = &self.chaos {
            chaos.validate()?;
        }
        if let Some(hedge) = &self.hedge {
            hedge.validate()?;
        }
        if let Some(check) = &self.health_check {
            check.validate()?;
        }
        if let Some(cold) = &self.cold_start {
            cold.validate()?;
        }
        Ok(())
    }

    /// The parsed base URL, checked: absolute, `http` or `https`, with a host.
    pub(crate) fn base_uri(&self) -> Result<Uri, ConfigError> {
        let uri: Uri = self
            .base_url
            .parse()
            .map_err(|e| ConfigError::new("base_url", format!("is not a valid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if cfg!(feature = "rustls") => {}
            Some("https") => {
                return Err(ConfigError::new(
                    "base_url",
                    "https needs the `rustls` feature",
                ));
            }
            Some(other) => {
                return Err(ConfigError::new(
                    "base_url",
                    format!("must use http or https, not {other}"),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "base_url",
                    "must be an absolute URL such as https://api.example.com/v1",
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new("base_url", "must name a host"));
        }
        // Never echo the URL itself here: it may hold the very secret refused.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ConfigError::new(
                "base_url",
                "must not contain a user name or password; send credentials in `headers`",
            ));
        }
        if uri.query().is_some() || self.base_url.contains('?') {
            return Err(ConfigError::new(
                "base_url",
                "must not contain a query; add it to each endpoint instead",
            ));
        }
        if self.base_url.contains('#') {
            return Err(ConfigError::new("base_url", "must not contain a fragment"));
        }
        Ok(uri)
    }

    pub(crate) fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            base_delay: self.retry_base_delay,
            max_delay: self.retry_max_delay,
            jitter: self.retry.jitter,
            // The client sets each call's deadline itself (see `Call::build`).
            total_timeout: None,
            // The client's own bodies are copied, never teed.
            max_replay_bytes: crate::retry::DEFAULT_MAX_REPLAY_BYTES,
        }
    }

    /// The breaker's settings, policy and backoff, for `build()`.
    pub(crate) fn breaker_builder(&self) -> CircuitBreakerBuilder {
        CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold: self.circuit_breaker_threshold,
            timeout: self.circuit_breaker_timeout,
            half_open_max_calls: self.circuit_breaker_half_open_max_calls,
        })
        .options(self.breaker.clone())
    }
}

impl fmt::Debug for HttpClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("HttpClientConfig");
        f.field("base_url", &self.base_url)
            .field("headers", &Redacted(&self.headers))
            .field("default_timeout", &self.default_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("pool_timeout", &self.pool_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_keepalive_connections", &self.max_keepalive_connections)
            .field("keepalive_expiry", &self.keepalive_expiry)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("circuit_breaker_threshold", &self.circuit_breaker_threshold)
            .field("circuit_breaker_timeout", &self.circuit_breaker_timeout)
            .field(
                "circuit_breaker_half_open_max_calls",
                &self.circuit_breaker_half_open_max_calls,
            )
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_stream_bytes", &self.max_stream_bytes)
            .field("stream", &self.stream)
            .field("post_is_idempotent", &self.post_is_idempotent)
            .field("idempotency_key", &self.idempotency_key)
            .field("user_agent", &self.user_agent)
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .field("http_version", &self.http_version)
            .field("http2_keep_alive_interval", &self.http2_keep_alive_interval)
            .field("http2_keep_alive_timeout", &self.http2_keep_alive_timeout)
            .field("rate_limit", &self.rate_limit)
            .field("cold_start", &self.cold_start)
            .field("rate_limit_per_model", &self.rate_limit_per_model)
            .field("breaker_per_model", &self.breaker_per_model);
        #[cfg(feature = "redis")]
        f.field("fleet", &self.fleet);
        f.field("chaos", &self.chaos);
        f.field("hedge", &self.hedge);
        f.field("health_check", &self.health_check);
        f.finish()
    }
}

#[cfg(feature = "serde")]
mod de;
mod health;
mod presets;
mod version;

pub use self::health::HealthCheck;
pub use self::version::HttpVersion;
