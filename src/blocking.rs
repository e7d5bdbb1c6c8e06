//! A blocking facade over [`HttpClient`](AsyncClient), for programs
//! without an async runtime (the way `reqwest::blocking` works).
//!
//! The client owns a small Tokio runtime; every method blocks the calling thread
//! until the call ends. It is safe to call from many threads at once. Calling it
//! from inside an async runtime would block that runtime's thread, so it is
//! refused there with an error ([`ErrorKind::Request`](crate::ErrorKind))
//! instead.
//!
//! # Example
//!
//! ```no_run
//! use stache_resilience::{blocking::HttpClient, HttpClientConfig};
//!
//! let client = HttpClient::new(HttpClientConfig::ollama("http://localhost:11434"))?;
//! let response = client.post("/api/embed", &serde_json::json!({"input": ["hi"]}))?;
//! println!("{}", response.status());
//! # Ok::<(), stache_resilience::Error>(())
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::circuit_breaker::CircuitBreaker;
use crate::client::{
    ClientStats, HttpClient as AsyncClient, HttpClientConfig, Response,
    StreamResponse as AsyncStream,
};
use crate::error::{Error, ErrorKind};

/// A blocking client for one provider. Cheap to clone; clones share the pool,
/// breaker and runtime.
#[derive(Clone)]
pub struct HttpClient {
    client: AsyncClient,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl HttpClient {
    /// Builds a client and its runtime.
    ///
    /// # Errors
    ///
    /// A configuration error, or an error if the runtime cannot start.
    pub fn new(config: HttpClientConfig) -> Result<Self, Error> {
        Self::from_async(AsyncClient::new(config)?)
    }

    /// Wraps an async client (for example one from a
    /// [`ServiceRegistry`](crate::ServiceRegistry)), sharing its pool and breaker.
    pub fn from_async(client: AsyncClient) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stache-resilience-blocking")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Request)
                    .with_message("could not start the blocking client's runtime")
                    .with_source(e)
            })?;
        Ok(HttpClient {
            client,
            runtime: Arc::new(runtime),
        })
    }

    fn block_on<T>(&self, future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(ErrorKind::Request).with_message(
                "the blocking client was called from inside an async runtime; use the async HttpClient there",
            ));
        }
        self.runtime.block_on(future)
    }

    /// `GET endpoint`.
    pub fn get(&self, endpoint: &str) -> Result<Response, Error> {
        self.block_on(self.client.get(endpoint).send())
    }

    /// `GET endpoint` with its own per-attempt timeout.
    pub fn get_with_timeout(&self, endpoint: &str, timeout: Duration) -> Result<Response, Error> {
        self.block_on(self.client.get(endpoint).timeout(timeout).send())
    }

    /// `POST` of `body` as JSON.
    pub fn post<T: Serialize + ?Sized>(&self, endpoint: &str, body: &T) -> Result<Response, Error> {
        self.block_on(self.client.post(endpoint, body).send())
    }

    /// `POST` of `body` as JSON with its own per-attempt timeout.
    pub fn post_with_timeout<T: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<Response, Error> {
        self.block_on(self.client.post(endpoint, body).timeout(timeout).send())
    }

    /// A streaming `POST`; read its lines with [`StreamResponse::next_line`] or
    /// iterate over it.
    pub fn stream_post<T: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &T,
    ) -> Result<StreamResponse, Error> {
        let inner = self.block_on(self.client.stream_post(endpoint, body).send())?;
        Ok(StreamResponse {
            inner,
            runtime: self.runtime.clone(),
        })
    }

    /// The provider's circuit breaker.
    pub fn circuit_breaker(&self) -> &CircuitBreaker {
        self.client.circuit_breaker()
    }

    /// Settings and live counters.
    pub fn stats(&self) -> ClientStats {
        self.client.stats()
    }

    /// The async client underneath.
    pub fn as_async(&self) -> &AsyncClient {
        &self.client
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::HttpClient")
            .field(&self.client)
            .finish()
    }
}

/// A blocking stream of NDJSON lines; also an [`Iterator`] of lines.
pub struct StreamResponse {
    inner: AsyncStream,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl StreamResponse {
    /// The next non-empty line, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<String>, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(ErrorKind::Request)
                .with_message("the blocking stream was read from inside an async runtime"));
        }
        let runtime = self.runtime.clone();
        runtime.block_on(self.inner.next_line())
    }

    /// The async stream underneath.
    pub fn as_async(&self) -> &AsyncStream {
        &self.inner
    }
}

impl Iterator for StreamResponse {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().transpose()
    }
}

impl fmt::Debug for StreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::StreamResponse")
            .field(&self.inner)
            .finish()
    }
}
