//! Fault injection for your own tests and drills: [`ChaosLayer`] (and
//! [`HttpClientConfig::chaos`](crate::HttpClientConfig::chaos)) injects, at
//! configured rates, added latency, an error status (with an optional
//! `Retry-After`), a reset connection, or a timeout — before the request
//! leaves (nothing is sent) or in place of its answer (the service acted on
//! it) — as Polly's Simmy does.
//!
//! **It is for tests and drills, never for production traffic by accident:**
//! nothing is injected unless a [`Chaos`] with faults is configured, and an
//! injected answer carries `x-stache-chaos: injected`.
//!
//! The faults go through everything above the layer as the real ones would:
//! in an [`HttpClient`](crate::HttpClient) the layer sits just above the
//! transport, so an injected 503 is retried by the replay rule and counted by
//! the breaker, and an injected reset before sending counts as a request the
//! provider never saw (so even a call that is not safe to repeat is retried).
//! A [seed](Chaos::seed) makes a run repeatable: the n-th request through a
//! layer (and its clones) always draws the same fault.
//!
//! ```
//! # async fn run() -> Result<(), stache_resilience::Error> {
//! use stache_resilience::chaos::{Chaos, Fault};
//! use stache_resilience::{HttpClient, HttpClientConfig};
//!
//! let mut config = HttpClientConfig::new("http://127.0.0.1:9/v1");
//! // A drill: the provider drops 30% of the requests.
//! config.chaos = Some(Chaos::new().seed(1).before(0.3, Fault::Reset));
//! let client = HttpClient::new(config)?;
//! # drop(client);
//! # Ok(()) }
//! ```

mod config;
mod layer;

pub use self::config::{Chaos, Fault};
pub use self::layer::{ChaosLayer, ChaosService, ResponseFuture};
pub use crate::error::Injected;
