//! [`HttpClient`]: one provider's resilient, pooled JSON client.
//!
//! A call runs through these steps, top to bottom:
//!
//! ```text
//! RequestId       the call's ID and `request` span, by RequestIdLayer's rule (the client's future)
//! CircuitBreaker  CircuitBreakerLayer: refused at once while open, one outcome per call
//! Retry           RetryLayer: transient failures sent again, with backoff and the retry budget
//! Hedge           HedgeLayer: a second copy of a slow idempotent attempt (`hedge`; off by default)
//! RateLimit       RateLimitLayer: each attempt waits its turn under the provider's limits
//! ReadAhead       ReadAheadLayer: a streamed answer read to its first line within the attempt
//! Timeout         TimeoutLayer: bounds each attempt: its head, and a buffered body
//! PoolLimit       PoolLimitLayer: a slot of `max_connections` reserved when the stack is ready
//! Chaos           ChaosLayer: injected faults (`chaos`; off by default)
//! transport       the pooled hyper-util client; reads a buffered body
//! ```
//!
//! Below the first step the stack is the crate's public layers, composed
//! (`http_client.rs` builds it with one `ServiceBuilder`). The client's future
//! picks the call's ID (the caller's own, else a valid `x-request-id` header
//! set on the call, else the ID of the request being handled, else a fresh
//! one: the rule [`RequestIdLayer`](crate::RequestIdLayer) follows) and opens its `request` span, then makes the stack ready: the
//! breaker answers first, and a call it refuses is never built. So a call gets
//! one request ID for all its attempts (in the `x-request-id` header of each,
//! and on the span around the whole call), and is refused at once while the
//! circuit is open. It retries transient failures, and the breaker records one
//! outcome per call, after its retries.
//!
//! When [`hedge`](crate::HttpClientConfig::hedge) is set, an idempotent attempt
//! with no answer after the hedge delay gets a second copy, and the first good
//! answer wins; copies draw on the retry budget. Every attempt, a copy included,
//! then takes its turn at the provider's [rate limiter](crate::rate_limit),
//! which is always on, before its timeout starts, so that waiting does not eat
//! the attempt's time. A streamed answer is read ahead to its first line before
//! the attempt counts as answered, so that a stream that breaks or stalls
//! before it is retried like any failed attempt. The timeout bounds each
//! attempt (a buffered body included), and the pool limit waits a bounded time
//! for a connection slot. When [`chaos`](crate::HttpClientConfig::chaos) is
//! set, faults are injected just above the transport, so that they meet every
//! layer a real fault would. The transport reuses pooled connections.
//!
//! A 2xx answer is `Ok(`[`Response`]`)` with the body already read; anything else
//! ends, after retries, as a [`crate::Error`] carrying the status, headers
//! and the start of the body.
//!
//! # Example
//!
//! ```
//! # async fn run() -> Result<(), stache_resilience::Error> {
//! use std::time::Duration;
//! use stache_resilience::{HttpClient, HttpClientConfig};
//!
//! let client = HttpClient::new(HttpClientConfig::ollama("http://localhost:11434"))?;
//! let body = serde_json::json!({ "model": "nomic-embed-text", "input": ["hello"] });
//! match client.post("/api/embed", &body).timeout(Duration::from_secs(120)).await {
//!     Ok(response) => {
//!         let value: serde_json::Value = response.json()?;
//!         println!("{} embeddings", value["embeddings"].as_array().map_or(0, Vec::len));
//!     }
//!     Err(e) if e.is_circuit_open() => println!("Ollama is down; try later"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

mod body;
mod call;
mod config;
mod explain;
mod future;
mod h2_watch;
mod headers;
mod health;
mod http_client;
mod models;
mod request;
mod response;
mod stats;
mod stream;
mod stream_response;
mod transport;

pub use self::config::{HealthCheck, HttpClientConfig, HttpVersion};
pub use self::future::Pending;
pub use self::http_client::HttpClient;
pub use self::request::{RequestBuilder, StreamRequestBuilder};
pub use self::response::Response;
pub use self::stats::ClientStats;
pub use self::stream_response::{EventStream, StreamResponse};
pub(crate) use self::stream_response::{NextStream, Restarter};
pub use crate::error::{BodyError, BodyTooLarge, StreamCut, WriteStalled};
pub use crate::framing::Event;

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<HttpClient>();
    is::<crate::error::Error>();
    is::<Response>();
    is::<http::StatusCode>();
}

fn _assert_send() {
    fn is<T: Send + 'static>() {}
    // A task that awaits a request must stay spawnable.
    is::<Pending>();
    is::<RequestBuilder>();
    is::<StreamRequestBuilder>();
}
