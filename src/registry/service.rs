//! [`ServiceRegistry`]: one shared client per provider name, on [`Registry`].

use std::fmt;
use std::sync::OnceLock;

use super::keyed::Registry;
use crate::client::{HttpClient, HttpClientConfig};
use crate::error::Error;

/// A thread-safe map from provider name to its shared [`HttpClient`].
///
/// Creation happens once per name, even when many threads ask at the same time;
/// later calls get a handle to the same client. Tests make their own registry or
/// call [`reset`](Self::reset).
#[derive(Default)]
pub struct ServiceRegistry {
    clients: Registry<String, HttpClient>,
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
    /// `config` is checked every time, so an invalid config is an error even
    /// when the client exists. If the client exists, `config` is not used; a
    /// warning is logged when it differs from the one the client was built
    /// with, since the caller may expect settings that are not in force (use
    /// [`replace`](Self::replace) to change them).
    ///
    /// # Errors
    ///
    /// A configuration error if `config` is invalid; nothing is stored then.
    pub fn get_client(
        &self,
        provider: &str,
        config: HttpClientConfig,
    ) -> Result<HttpClient, Error> {
        config.validate()?;
        if let Some(client) = self.clients.get(provider) {
            warn_if_different(provider, &client, &config);
            return Ok(client);
        }
        let mut built = false;
        let client = self.clients.get_or_try_init(provider.to_owned(), || {
            built = true;
            HttpClient::for_provider(provider, config.clone())
        })?;
        if built {
            tracing::debug!(provider, "created the provider's client");
        } else {
            warn_if_different(provider, &client, &config);
        }
        Ok(client)
    }

    /// Builds a new client for `provider` from `config` and puts it in place of
    /// the old one, on purpose (new settings, a new API key). Handles given out
    /// before keep the old client, its pool and its breaker.
    ///
    /// # Errors
    ///
    /// A configuration error if `config` is invalid; the old client stays then.
    pub fn replace(&self, provider: &str, config: HttpClientConfig) -> Result<HttpClient, Error> {
        let client = HttpClient::for_provider(provider, config)?;
        self.clients.insert(provider.to_owned(), client.clone());
        tracing::info!(provider, "replaced the provider's client");
        Ok(client)
    }

    /// The client for `provider`, if one was built.
    pub fn get(&self, provider: &str) -> Option<HttpClient> {
        self.clients.get(provider)
    }

    /// The names of the providers with a client, sorted.
    pub fn providers(&self) -> Vec<String> {
        let mut names = self.clients.keys();
        names.sort();
        names
    }

    /// Forgets `provider`'s client and returns it. Handles given out keep
    /// working.
    pub fn remove(&self, provider: &str) -> Option<HttpClient> {
        self.clients.remove(provider)
    }

    /// Forgets every client. Handles already given out keep working; the next
    /// `get_client` builds a fresh client (with a fresh, closed breaker).
    pub fn reset(&self) {
        self.clients.reset();
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
