//! Registries that hand out one shared, composed stack per key.
//!
//! * [`Registry<K, S>`](Registry): any stack `S` (an [`HttpClient`](crate::HttpClient),
//!   a `ServiceBuilder` stack over a tonic channel or a reqwest client, …) by
//!   any key `K` (a provider name, a provider and model pair), built once per key
//!   even when many threads ask for it first at the same time.
//! * [`ServiceRegistry`]: the original design's registry of [`HttpClient`](crate::HttpClient)s by
//!   provider name, built on `Registry`.
//!
//! Each key gets its own stack — its own connection pool, circuit breaker, retry
//! budget and stats. When Ollama is down, its open circuit refuses Ollama calls
//! and leaves Mixedbread alone.
//!
//! # Example
//!
//! ```
//! use stache_resilience::{HttpClientConfig, ServiceRegistry};
//!
//! let registry = ServiceRegistry::new();
//! let a = registry.get_client("ollama", HttpClientConfig::ollama("http://localhost:11434"))?;
//! let b = registry.get_client("ollama", HttpClientConfig::ollama("http://localhost:11434"))?;
//! assert!(a.circuit_breaker().same_as(b.circuit_breaker()));
//! assert_eq!(registry.providers(), ["ollama"]);
//! # Ok::<(), stache_resilience::Error>(())
//! ```

mod keyed;
mod service;

pub use self::keyed::Registry;
pub use self::service::ServiceRegistry;
