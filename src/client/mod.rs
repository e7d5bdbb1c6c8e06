//! [`HttpClient`]: one provider's resilient, pooled JSON client.
//!
//! A call runs through the same steps as this stack of the crate's layers:
//!
//! ```text
//! RequestId -> CircuitBreaker -> Retry -> Timeout -> PoolLimit -> hyper-util client
//! ```
//!
//! The client does the first two itself (its future makes the call's ID and
//! `request` span, as [`RequestIdLayer`](crate::RequestIdLayer) does, and asks the
//! breaker before the request is even built), then runs the layers below. So a
//! call gets one request ID for all its attempts (in the `x-request-id` header of
//! each, and on the span around the whole call), is refused at once while the
//! circuit is open, retries transient failures (one breaker outcome per call,
//! after its retries), bounds each attempt (body included) by the timeout, waits a
//! bounded time for a connection slot, and reuses pooled connections.
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
mod headers;
mod http_client;
mod lines;
mod request;
mod response;
mod sse;
mod stats;
mod stream;
mod stream_response;
mod transport;

pub use self::config::{HttpClientConfig, HttpVersion};
pub use self::future::Pending;
pub use self::http_client::HttpClient;
pub use self::request::{RequestBuilder, StreamRequestBuilder};
pub use self::response::Response;
pub use self::sse::Event;
pub use self::stats::ClientStats;
pub use self::stream_response::{EventStream, StreamResponse};
pub use crate::error::{BodyError, BodyTooLarge};
pub use crate::hedge::{Hedge, HedgeStats};

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
