//! Ready configurations per provider: the original design's (`ollama`,
//! `mixedbread`, with its values: the porting contract) and today's
//! (`openai`, `anthropic`).

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::HealthCheck;
use super::HttpClientConfig;
use crate::circuit_breaker::OpenBackoff;
use crate::provider::dialect::{AnthropicMessages, Ollama, OpenAi, StreamDialect};
use crate::rate_limit::ColdStart;
use crate::read_ahead::StreamOptions;
use crate::retry::Jitter;

impl HttpClientConfig {
    /// The preset for a local Ollama server: 90 s timeout (large embedding
    /// batches), 3 retries from 1 s to 10 s, and a tolerant breaker (15 failures,
    /// 60 s, 3 test calls). The original design's values; for Ollama's
    /// OpenAI-compatible API with today's behaviour, see
    /// [`openai`](Self::openai) with its `base_url` set.
    ///
    /// Its streams are read as Ollama's NDJSON (or, from its `/v1`
    /// endpoints, OpenAI's Chat Completions): handed on at the first token,
    /// an error inside them named, a stream cut before `"done": true` an
    /// error ([`StreamOptions`]: no first-token limit, as a local model may
    /// take minutes to load).
    pub fn ollama(base_url: impl Into<String>) -> Self {
        HttpClientConfig {
            default_timeout: Duration::from_secs(90),
            stream: StreamOptions::dialect(StreamDialect::new(Ollama)),
            ..HttpClientConfig::new(base_url)
        }
    }

    /// The preset for the Mixedbread cloud API: base
    /// `https://api.mixedbread.com/v1`, `Authorization: Bearer <api_key>`, 60 s
    /// timeout, 3 retries from 1 s to 10 s, and a breaker that opens sooner
    /// (10 failures, 60 s, 3 test calls). The original design's values.
    ///
    /// An API key that cannot be a header value (a newline, say) is left out of
    /// the headers and reported by [`validate`](Self::validate).
    pub fn mixedbread(api_key: &str) -> Self {
        let config = HttpClientConfig {
            circuit_breaker_threshold: 10,
            ..HttpClientConfig::new("https://api.mixedbread.com/v1")
        };
        config.with_key(http::header::AUTHORIZATION, &format!("Bearer {api_key}"))
    }

    /// The preset for OpenAI's API, and for any server that speaks it (Azure
    /// OpenAI, vLLM, Ollama's `/v1`, …: set `base_url`): base
    /// `https://api.openai.com/v1`, `Authorization: Bearer <api_key>`, and
    /// today's behaviour rather than the original design's:
    ///
    /// * retries as the vendor's own SDK makes them: 3, from 0.5 s growing to
    ///   8 s, each up to a quarter shorter ([`Jitter::Quarter`]), a
    ///   `Retry-After` honoured up to the call's deadline;
    /// * 600 s per attempt (a long generation), 5 s to connect;
    /// * a breaker that hears of every failed attempt
    ///   ([`count_attempts`](crate::circuit_breaker::BreakerOptions::count_attempts)),
    ///   opens after 5 in a row, and stays open 5 s at first, doubling on each
    ///   failed recovery up to 2 minutes; its probe is one attempt; one such
    ///   breaker per model ([`breaker_per_model`](Self::breaker_per_model));
    /// * while the circuit is open, `GET /models` every second
    ///   ([`health_check`](Self::health_check)): the first healthy answer
    ///   closes it;
    /// * a call that meets the open circuit, or whose retries met it
    ///   opening, waits up to 30 s (never past its deadline) for it to close
    ///   ([`wait_while_open`](crate::circuit_breaker::BreakerOptions::wait_while_open)),
    ///   unless another provider of a group can take it;
    /// * the rate limiter reads the `x-ratelimit-*` headers (as every client
    ///   does), and lets 2 attempts out at once while it knows nothing of the
    ///   provider's limit, opening up as answers succeed
    ///   ([`cold_start`](Self::cold_start)); a throttled answer holds back
    ///   the calls to its model alone
    ///   ([`rate_limit_per_model`](Self::rate_limit_per_model));
    /// * streams read in their dialect ([`OpenAi`]: Chat Completions and
    ///   Responses alike; [`AnthropicMessages`] for `anthropic`), handed on at
    ///   the first generated token, which must come within 30 s
    ///   ([`StreamOptions`]); an error inside a stream is named, retried or
    ///   moved on from like its status before any content, and a stream cut
    ///   before its end marker is an error.
    ///
    /// An API key that cannot be a header value is left out of the headers
    /// and reported by [`validate`](Self::validate).
    pub fn openai(api_key: &str) -> Self {
        HttpClientConfig::today("https://api.openai.com/v1", StreamDialect::new(OpenAi))
            .with_key(http::header::AUTHORIZATION, &format!("Bearer {api_key}"))
    }

    /// The preset for Anthropic's Messages API: base
    /// `https://api.anthropic.com/v1`, `x-api-key: <api_key>` and
    /// `anthropic-version: 2023-06-01`, with the behaviour of
    /// [`openai`](Self::openai) (the `anthropic-ratelimit-*` headers read).
    ///
    /// An API key that cannot be a header value is left out of the headers
    /// and reported by [`validate`](Self::validate).
    pub fn anthropic(api_key: &str) -> Self {
        let mut config = HttpClientConfig::today(
            "https://api.anthropic.com/v1",
            StreamDialect::new(AnthropicMessages),
        )
        .with_key(HeaderName::from_static("x-api-key"), api_key);
        config.headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static("2023-06-01"),
        );
        config
    }

    /// The values the `openai` and `anthropic` presets share.
    fn today(base_url: &str, dialect: StreamDialect) -> Self {
        let mut config = HttpClientConfig::new(base_url);
        config.default_timeout = Duration::from_secs(600);
        config.connect_timeout = Duration::from_secs(5);
        config.max_retries = 3;
        config.retry_base_delay = Duration::from_millis(500);
        config.retry_max_delay = Duration::from_secs(8);
        config.retry.jitter = Jitter::Quarter;
        config.circuit_breaker_threshold = 5;
        config.circuit_breaker_timeout = Duration::from_secs(5);
        config.circuit_breaker_half_open_max_calls = 1;
        config.breaker.count_attempts = true;
        config.breaker.open_backoff = OpenBackoff::Exponential {
            max: Duration::from_secs(120),
            jitter: 0.2,
        };
        config.breaker.wait_while_open = Some(Duration::from_secs(30));
        config.health_check = Some(HealthCheck::get("/models"));
        config.cold_start = Some(ColdStart::new(2, 64));
        config.rate_limit_per_model = true;
        config.breaker_per_model = true;
        config.stream =
            StreamOptions::dialect(dialect).first_token_timeout(Duration::from_secs(30));
        config
    }

    /// The config with `name: value` sent on every call, marked sensitive; a
    /// value that cannot be a header is reported by `validate`.
    fn with_key(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::try_from(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.headers.insert(name, value);
            }
            Err(_) => self.invalid_api_key = true,
        }
        self
    }
}
