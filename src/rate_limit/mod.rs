//! Provider rate limits: a client-wide gate after a throttled answer, a pace
//! learned from the provider, configured limits, and the limits the
//! provider's headers report.
//!
//! A [`RateLimiter`] is one provider's state, shared by every clone; an
//! [`HttpClient`](crate::HttpClient) has one (always on), and
//! [`RateLimitLayer`] puts one in any tower stack of `http` requests. Each
//! attempt takes its turn, bounded by the call's deadline: a known wait that
//! would pass it fails at once with [`RateLimited`], sending nothing
//! ([`Error::is_rate_limited`](crate::Error::is_rate_limited)).
//!
//! # Herd control, on by default
//!
//! * **The gate.** A 429, or a 503 that asks for a wait (`Retry-After`,
//!   `retry-after-ms`), closes the gate until the wait is over: the other
//!   callers of the same limiter wait there instead of sending attempts that
//!   would be refused (and counted against the quota). The gate depends on
//!   no request, so [`RateLimitService`] waits for it in `poll_ready`, as
//!   tower's readiness contract asks: a `Buffer` or balancer above sees a
//!   service that is not ready. What depends on the request (its token
//!   cost, the pace's line, its deadline) is waited for in `call`.
//!   [`HttpClient`](crate::HttpClient) refuses at once a call whose deadline
//!   comes before the gate opens. The gate stays closed 5 minutes at most
//!   ([`RateLimiter::with_max_gate`]), whatever the provider asks: one
//!   `Retry-After: 86400` does not stop a client for a day.
//! * **The pace.** From then on attempts are released one at a time, first
//!   come first served, at a spacing learned from the provider's answers:
//!   the throttled answer's wait at first, halved on each acceptance until an
//!   attempt is refused, then just above the longest spacing refused and no
//!   lower than the shortest accepted. After 30 s with no throttled answer,
//!   and nobody in line, the pace turns off. The rules, and why not Google
//!   SRE's adaptive throttling, are in the source (`pacer.rs`).
//! * The retry layer's own wait after a `Retry-After` gets a random 0–20% on
//!   top, so that callers told to wait by the same answer do not come back
//!   together.
//!
//! * **Per model.** OpenAI and Anthropic keep their limits per model. A
//!   limiter made [`per_model`](RateLimiter::per_model) (the `openai` and
//!   `anthropic` presets' clients are) keeps a gate and a pace for each
//!   [`Model`](crate::provider::Model) a request names, so that a `429` for
//!   one model does not hold back calls to another. A model's gate depends
//!   on the request, so it is waited for in `call`, not in `poll_ready`.
//!
//! * **A spent quota, a refused key.** An answer whose
//!   [`ProviderError`](crate::provider::ProviderError) is the account's
//!   (OpenAI's `insufficient_quota`, Anthropic's `billing_error`, an invalid
//!   API key: [`is_final_for_provider`](crate::provider::ProviderErrorKind::is_final_for_provider))
//!   is not a rate: the gate closes for every model for the longest gate (5
//!   minutes by default), and the calls meanwhile are refused at once,
//!   sending nothing.
//!
//! A client that has never been throttled pays one atomic load per attempt:
//! no lock, no clock (a limiter made `per_model` takes one short lock per
//! attempt that names a model, to find the model's state).
//!
//! # Configured limits
//!
//! [`RateLimit`] (`requests_per_minute`, `tokens_per_minute`, `burst`), on
//! [`HttpClientConfig::rate_limit`](crate::HttpClientConfig::rate_limit) or
//! [`RateLimiter::with_limit`]: each call reserves its start as it arrives,
//! so calls go in arrival order, and one that would start past its deadline is
//! refused at once. A call declares its tokens with
//! [`RequestBuilder::cost`](crate::client::RequestBuilder::cost) (or a
//! [`Cost`] extension).
//!
//! # Cold start
//!
//! Before the first answer, a limiter knows nothing of a provider's limit,
//! and a burst of callers all go at once: against a limit of 2 a second, 60
//! callers cost 60 attempts before the first 429 comes back, and as many
//! again. With [`RateLimiter::with_cold_start`] (on in the `openai` and
//! `anthropic` presets), a window of attempts in flight starts at
//! [`ColdStart::initial`] and grows by one with each successful answer, as
//! TCP's slow start does, until the provider throttles; it then halves on
//! each 429 and grows by one per window. While the window is full,
//! [`RateLimitService`]'s readiness is Pending; a place is given back when
//! its attempt's answer comes, or when the attempt is dropped.
//!
//! # What the provider's headers say
//!
//! Every answer's headers are scanned for a spent quota: a remaining count of
//! `0` closes the gate until that limit's reset. Values that make no sense (a
//! negative or empty count, a limit of `0`, a reset that is unreadable, zero,
//! past, or more than a day away) are ignored.
//!
//! | provider | remaining | limit | reset |
//! | --- | --- | --- | --- |
//! | OpenAI (and Azure OpenAI, Groq, …) | `x-ratelimit-remaining-requests`, `x-ratelimit-remaining-tokens` | `x-ratelimit-limit-requests`, `x-ratelimit-limit-tokens` | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens`: a duration as Go writes one (`6m0s`, `1.5s`, `20ms`) |
//! | Anthropic | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining` | `anthropic-ratelimit-…-limit` | `anthropic-ratelimit-…-reset`: an RFC 3339 time (`2026-12-02T10:00:30Z`) |
//!
//! Any other dimension named the same way (`x-ratelimit-remaining-images`,
//! say) is read the same way.
//!
//! # Fleet mode (feature `redis`)
//!
//! A provider's quota belongs to the organisation, not to one process: N
//! processes that each keep to the limit send N times it. With a [`Fleet`],
//! the configured [`RateLimit`] is kept in Redis instead of in the process:
//! each call reserves its start there, in one round trip, with a generic cell
//! rate algorithm run as one atomic Lua script on Redis's own clock (so the
//! processes' clocks need not agree). The gate and the learned pace stay in
//! the process.
//!
//! * **Keys.** `stache:rl:{<namespace>:<hash>}:requests` and `…:tokens`, where
//!   the namespace is the provider's name and the hash is the first 16 hex
//!   digits of the SHA-256 of its API key: processes calling the same
//!   provider with the same key share a budget, and the key itself never
//!   reaches Redis. The braces keep both keys in one Redis Cluster slot.
//! * **Never long on the critical path.** Each reservation waits at most
//!   [`acquire_timeout`](Fleet::acquire_timeout) (50 ms by default) for
//!   Redis. When Redis does not answer in time, or refuses, the limiter logs a
//!   WARN once and keeps calls at `limit / fleet_size` in the process
//!   ([`RateLimit::divided`]); it asks Redis again every
//!   [`probe_interval`](Fleet::probe_interval) (one call at a time), and goes
//!   back to the shared budget, with an INFO, as soon as Redis answers.
//! * **No secret in logs.** The Redis URL's user name, password and query are
//!   left out of `Debug` output and of every log line.
//!
//! ```no_run
//! # #[cfg(not(feature = "redis"))] fn main() {}
//! # #[cfg(feature = "redis")]
//! # fn main() -> Result<(), stache_resilience::Error> {
//! use stache_resilience::rate_limit::{Fleet, RateLimit};
//! use stache_resilience::{HttpClient, HttpClientConfig};
//!
//! // Eight pods share OpenAI's 3,000 requests a minute.
//! let mut config = HttpClientConfig::new("https://api.openai.com/v1");
//! config.rate_limit = Some(RateLimit::per_minute(3_000).burst(20));
//! config.fleet = Some(Fleet::new("redis://10.0.0.5:6379/0").fleet_size(8));
//! let client = HttpClient::for_provider("openai", config)?;
//! # Ok(()) }
//! ```
//!
//! One round trip per call rather than leases of a few permits at a time:
//! the figures that chose it are in `benches/README.md`.
//!
//! # With a client of your own
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use stache_resilience::rate_limit::{RateLimit, RateLimiter};
//!
//! let limiter = RateLimiter::with_limit(RateLimit::per_minute(60)).unwrap();
//! let started = tokio::time::Instant::now();
//! for _ in 0..3 {
//!     let permit = limiter.acquire(0, None).await.unwrap();
//!     // … send the request, then report its answer:
//!     permit.finish(http::StatusCode::OK, &http::HeaderMap::new());
//! }
//! // One a second: the third went two seconds after the first.
//! assert_eq!(started.elapsed().as_secs(), 2);
//! # }
//! ```

mod config;
#[cfg(feature = "redis")]
mod fleet;
mod future;
mod gcra;
mod headers;
mod layer;
mod limiter;
mod pacer;
mod tokens;
mod turn;
mod window;

pub use self::config::RateLimit;
#[cfg(feature = "redis")]
pub use self::fleet::{Fleet, FleetStats};
pub use self::future::ResponseFuture;
pub use self::layer::{Cost, RateLimitLayer, RateLimitService};
pub use self::limiter::{Permit, RateLimitStats, RateLimiter};
pub use self::tokens::TokenReservation;
pub use self::window::ColdStart;
pub use crate::error::RateLimited;
