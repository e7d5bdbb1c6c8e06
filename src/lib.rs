//! Keep an application alive when the HTTP services and SDKs it calls misbehave.
//!
//! `stache-resilience` gives each outside "provider" (an LLM API, an embedding
//! API, any REST API) a shared stack of [`tower`] layers over a pooled hyper
//! client — as a ready [`HttpClient`], one per provider from a
//! [`ServiceRegistry`], or as layers to put on any service:
//!
//! * LLM streams read in the provider's [dialect](provider::dialect) (OpenAI,
//!   Anthropic, Ollama): handed over at the first generated token within a
//!   first-token limit, in-band errors named and retried, a stream cut before
//!   its end marker an error, a broken stream restarted whole on the next
//!   provider, the answering model and usage reported (see
//!   [`StreamResponse`](client::StreamResponse));
//! * [rate limits](rate_limit) learned from a provider's 429s and headers,
//!   per model, and configured request and token limits a fleet shares
//!   through Redis;
//! * [failover] across providers and [hedging](hedge) of slow calls;
//! * a [circuit breaker](circuit_breaker) that stops calling a service that keeps
//!   failing, and rejects at once with `Circuit breaker OPEN - rejecting request`;
//! * [retries](retry) of transient failures with capped, jittered exponential
//!   backoff, `Retry-After` and a retry budget — and [`retry::with_retry`] for
//!   SDK calls;
//! * [request IDs](request_id): an 8-character ID in the header and in every log
//!   line of a request, retries included;
//! * [timeouts](timeout) per attempt, with a per-request override;
//! * a [limit on calls in flight](pool) with a bounded wait;
//! * [named provider errors](provider) (a spent quota, a context too long, a
//!   content filter, …), and presets for OpenAI and Anthropic
//!   ([`HttpClientConfig::openai`], [`HttpClientConfig::anthropic`]).
//!
//! One [classifier](classify) decides for all of them what a result means (a 503
//! is retried and counts against the breaker; a 404 is neither; a 429 is retried
//! but leaves the breaker alone).
//!
//! # Example: a provider client
//!
//! ```no_run
//! # async fn run() -> Result<(), stache_resilience::Error> {
//! use stache_resilience::{HttpClientConfig, ServiceRegistry};
//!
//! // One shared client per provider: its own pool, breaker and retry budget.
//! let ollama = ServiceRegistry::global()
//!     .get_client("ollama", HttpClientConfig::ollama("http://localhost:11434"))?;
//!
//! let body = serde_json::json!({ "model": "nomic-embed-text", "input": ["hello"] });
//! match ollama.post("/api/embed", &body).await {
//!     Ok(response) => println!("{}", response.text()?),
//!     Err(e) if e.is_circuit_open() => println!("Ollama is down, not calling it"),
//!     Err(e) => println!("failed after retries: {e} (request {:?})", e.request_id()),
//! }
//! # Ok(()) }
//! ```
//!
//! # Example: the layers on their own
//!
//! The layers compose in any `ServiceBuilder`, over any service:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use stache_resilience::{
//!     CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, RequestIdLayer,
//!     classify::HttpClassifier, retry::{RetryConfig, RetryLayer}, timeout::TimeoutLayer,
//! };
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreaker::new(CircuitBreakerConfig::default());
//! let mut svc = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new().provider("echo"))
//!     .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
//!     .layer(RetryLayer::new(RetryConfig::default()).classifier(HttpClassifier))
//!     .layer(TimeoutLayer::new(Duration::from_secs(60)))
//!     .service_fn(|req: http::Request<String>| async move {
//!         Ok::<_, std::io::Error>(http::Response::new(req.into_body()))
//!     });
//!
//! let req = http::Request::new("hello".to_string());
//! let res = svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.body(), "hello");
//! assert_eq!(breaker.stats().failure_count, 0);
//! # }
//! ```
//!
//! # Choosing a configuration
//!
//! [`HttpClientConfig::new`] starts from defaults that suit most providers. The
//! original design's guidance, by kind of service:
//!
//! | kind | timeout | `max_retries` | breaker threshold | breaker timeout |
//! | --- | --- | --- | --- | --- |
//! | cloud APIs (Mixedbread, OpenAI, …) | 30–60 s (they have their own limits) | 3 (rate limits, transient errors) | 10–15 (they can be flaky) | 60 s |
//! | local services (Ollama) | 90–120 s (large batches) | 3 (the local network is reliable) | 15–20 (local failures are rare) | 60 s |
//! | databases and SDKs, through [`retry::with_retry`] | the driver's own | 2–3 | – | – |
//!
//! For databases also use a short `base_delay` (0.5–1 s) and a `retry_if` that
//! accepts only the driver's transient errors (timeouts, "too many
//! connections"), never constraint violations. The presets
//! [`HttpClientConfig::ollama`] and [`HttpClientConfig::mixedbread`] carry these
//! numbers. Use a per-request [`timeout`](client::RequestBuilder::timeout) for the
//! odd long call (a large embedding batch) rather than raising every call's
//! timeout; keep health checks short (5 s).
//!
//! # Troubleshooting
//!
//! **The breaker keeps opening** (calls refused, the state going back and forth
//! between open and half-open). Check the service itself first; the
//! `circuit breaker opened` WARN event and [`ClientStats`](crate::client::ClientStats) show when and how often.
//! If the service is healthy but slow, calls time out and count as failures:
//! raise `default_timeout` (or the per-request timeout for the slow calls). If it
//! fails in bursts it survives, raise `circuit_breaker_threshold` (say 20).
//!
//! **Calls are slow, and retries are why.** Worst case, a call takes
//! `(1 + max_retries) × timeout` plus the backoff in between. Lower `max_retries`
//! (2 instead of 3), lower `retry_base_delay` and `retry_max_delay` (0.5 s and
//! 5 s), or lower `circuit_breaker_threshold` so a dead service is refused sooner.
//!
//! **A retry does not happen.** Only transient outcomes are retried (see the
//! table above): a 4xx other than 408 and 429 is the caller's mistake and is
//! returned at once, and so is a `Retry-After` longer than `retry_max_delay`.
//! The retry budget (20% of calls plus 10 a second) also stops retries during
//! a storm (`retry.budget = false` turns it off). With [`retry::with_retry`], check
//! that `retry_if` accepts the error you see: log its type.
//!
//! **Pool exhaustion** ([`Error::is_pool_timeout`]): every one of
//! `max_connections` slots was busy for `pool_timeout`. Raise `max_connections`
//! (100), shorten `default_timeout` so that hung calls give their slot back
//! sooner, and drop [`StreamResponse`](crate::client::StreamResponse)s as soon as you are done with them: a
//! stream holds its slot until it is dropped.
//!
//! # Over reqwest (feature `reqwest`)
//!
//! `reqwest::Client` is a `tower::Service<reqwest::Request>`. The circuit
//! breaker, [`RetryLayer`], [`RequestIdLayer`], [`TimeoutLayer`] and the
//! [`HedgeLayer`](hedge::HedgeLayer) go on it,
//! and [`HttpClassifier`](classify::HttpClassifier) reads reqwest's responses
//! by the same table as hyper's. The rate limit, pool and chaos layers take
//! `http::Request` only. A `reqwest::Request` has no extensions that this
//! crate can reach, and that sets the limits:
//!
//! * A retry sends a copy from `reqwest::Request::try_clone`. A buffered body
//!   is sent again; a streamed body has no copy, so its request is sent once
//!   and never retried.
//! * Whether a request is safe to repeat comes from its method, or from the
//!   [`SAFE_TO_REPEAT`](retry::SAFE_TO_REPEAT) header (`true` or `false`), which
//!   the retry and hedge layers read and remove before sending; there is no
//!   [`Idempotent`](retry::Idempotent) extension. The word cannot travel with
//!   the request further down: a `HedgeLayer` below a `RetryLayer` sees the
//!   method alone. A request that is not safe to repeat is retried only when
//!   the failure proves it was never processed; for reqwest's own errors, that
//!   is one whose `is_connect()` is true.
//! * There is no call deadline. A request cannot carry a
//!   [`RequestDeadline`](timeout::RequestDeadline), so
//!   [`total_timeout`](retry::RetryConfig::total_timeout) neither stops the
//!   retries nor cuts the attempt running when it passes. Wrap the call in
//!   `tokio::time::timeout` to bound the whole of it.
//! * [`TimeoutLayer`] bounds each attempt by the request's own
//!   `reqwest::Request::timeout` when it has one, and by the layer's limit
//!   otherwise; a [`RequestTimeout`](timeout::RequestTimeout) cannot be set.
//! * [`RequestIdLayer`] sets the `x-request-id` header, opens the `request`
//!   span and makes the ID [`current`](request_id::current), as for
//!   `http::Request`, but cannot put the [`RequestId`](request_id::RequestId)
//!   in the request's extensions.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `rustls` | yes | `https://` through rustls (ring provider, webpki roots) |
//! | `serde` | no | configs from TOML/JSON (durations in seconds), serializable stats |
//! | `blocking` | no | `blocking::HttpClient`, a blocking facade over the HTTP client for programs without an async runtime |
//! | `metrics` | no | counters, a gauge and a histogram per provider through the `metrics` facade ([`telemetry`] lists them) |
//! | `reqwest` | no | the layers over `reqwest::Client`, and `HttpClassifier` for reqwest's responses (limits above) |
//! | `tonic` | no | gRPC over tonic: `tonic::body::Body` retried without an adapter, and `grpc::StatusLayer` turning the layers' errors into gRPC status codes |
//! | `compression` | no | `accept-encoding: gzip, br, zstd`, bodies decoded as they are read, and `max_response_bytes` bounding the decoded size |
//! | `redis` | no | fleet mode of the rate limiter: one provider quota shared by many processes through Redis (`rate_limit::Fleet`); the Redis key holds a hash of the API key, never the key itself |
//! | `full` | no | all of the above |
//!
//! The minimum supported Rust version is 1.85 (edition 2024).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules by tier, bottom up: each file imports only from its own folder
// and from lower tiers; .ci/run checks that the files of src/ import each other
// in no cycle.
//
// Tier 0: leaves.
mod deadline;
mod framing;
mod redact;
pub mod request_id;
mod retry_after;
mod scope;
#[cfg(feature = "serde")]
mod serde_secs;
mod sync;
pub mod telemetry;

// Tier 1: the error types every layer and the classifier share, and what a
// call says about its provider.
mod error;
pub mod provider;

// Tier 2: what a result means.
pub mod classify;

// Tier 3: the layers.
pub mod chaos;
pub mod circuit_breaker;
pub mod hedge;
pub mod pool;
pub mod rate_limit;
pub mod read_ahead;
pub mod retry;
pub mod timeout;

// Tier 4: the client over the layers.
pub mod client;

// Tier 5: what is built on the client and the layers.
#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
mod builder;
pub mod failover;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
#[cfg(feature = "reqwest")]
mod over_reqwest;
pub mod registry;
pub mod server;

// The handful of names an application writes every day. Everything else has one
// path, in its module.
pub use crate::builder::ServiceBuilderExt;
#[doc(no_inline)]
pub use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
#[doc(no_inline)]
pub use crate::client::{HttpClient, HttpClientConfig};
pub use crate::error::{BoxError, ConfigError, Error, ErrorKind, MAX_ERROR_BODY_BYTES};
#[doc(no_inline)]
pub use crate::registry::ServiceRegistry;
#[doc(no_inline)]
pub use crate::request_id::RequestIdLayer;
#[doc(no_inline)]
pub use crate::retry::{RetryConfig, RetryLayer};
#[doc(no_inline)]
pub use crate::timeout::TimeoutLayer;
/// The `http` crate this one is built on (its `Method`, `HeaderMap`,
/// `StatusCode`, …), re-exported so that its version always matches.
pub use http;

/// The snippets of README.md, compiled and run as doc tests so that they cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
