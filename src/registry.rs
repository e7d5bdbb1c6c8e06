//! [`ServiceRegistry`]: one shared client per provider name.
//!
//! Each provider (say `"ollama"` and `"mixedbread"`) gets its own
//! [`HttpClient`] — its own connection pool, circuit breaker, retry budget and
//! stats — built the first time it is asked for and shared after that. When
//! Ollama is down, its open circuit refuses Ollama calls and leaves Mixedbread
//! alone.
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

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::client::{HttpClient, HttpClientConfig};
use crate::error::Error;

/// A thread-safe map from provider name to its shared [`HttpClient`].
///
/// Creation happens once per name, even when many threads ask at the same time;
/// later calls get a handle to the same client. Tests make their own registry or
/// call [`reset`](Self::reset).
#[derive(Default)]
pub struct ServiceRegistry {
    clients: RwLock<HashMap<String, HttpClient>>,
}

impl ServiceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ServiceRegistry::default()
    }

    /// The process-wide registry.
    pub fn global() -> &'static ServiceRegistry {
        static GLOBAL: OnceLock<ServiceRegistry> = OnceLock::new();
        GLOBAL.get_or_init(ServiceRegistry::new)
    }

    /// The client for `provider`, built from `config` if it does not exist yet.
    ///
    /// If it exists, `config` is not used; a warning is logged when it differs
    /// from the one the client was built with, since the caller may expect
    /// settings that are not in force.
    ///
    /// # Errors
    ///
    /// A configuration error if the client had to be built and `config` is
    /// invalid; nothing is stored then.
    pub fn get_client(
        &self,
        provider: &str,
        config: HttpClientConfig,
    ) -> Result<HttpClient, Error> {
        if let Some(client) = self.read().get(provider) {
            warn_if_different(provider, client, &config);
            return Ok(client.clone());
        }
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(provider) {
            warn_if_different(provider, client, &config);
            return Ok(client.clone());
        }
        let client = HttpClient::for_provider(provider, config)?;
        tracing::debug!(provider, "created the provider's client");
        clients.insert(provider.to_owned(), client.clone());
        Ok(client)
    }

    /// The client for `provider`, if one was built.
    pub fn get(&self, provider: &str) -> Option<HttpClient> {
        self.read().get(provider).cloned()
    }

    /// The names of the providers with a client, sorted.
    pub fn providers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Forgets every client. Handles already given out keep working; the next
    /// `get_client` builds a fresh client (with a fresh, closed breaker).
    pub fn reset(&self) {
        self.clients
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HttpClient>> {
        self.clients.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn warn_if_different(provider: &str, client: &HttpClient, config: &HttpClientConfig) {
    if client.config() != config {
        tracing::warn!(
            provider,
            "get_client was given a config that differs from the one this provider's client was built with; the existing client is returned unchanged"
        );
    }
}

impl fmt::Debug for ServiceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceRegistry")
            .field("providers", &self.providers())
            .finish()
    }
}
