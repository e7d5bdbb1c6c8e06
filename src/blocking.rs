//! A blocking facade over [`HttpClient`](AsyncClient), for programs
//! without an async runtime (the way `reqwest::blocking` works).
//!
//! The client owns a small Tokio runtime that runs its calls; every method
//! blocks the calling thread until the call ends. It is safe to call from many
//! threads at once, and from a `tokio::task::spawn_blocking` closure. Calling it
//! from async code (a task on a runtime's worker, or inside `block_on`) would
//! block that runtime's thread, so it is refused there with an error
//! ([`ErrorKind::Request`](crate::ErrorKind)) instead. Dropping the client (or
//! its last clone) is safe anywhere, async code included: its runtime is shut
//! down in the background.
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
    runtime: Arc<OwnedRuntime>,
}

/// The client's runtime, shut down in the background when the last clone goes:
/// dropping a runtime the usual way panics in async code.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether the current thread runs async code, where blocking it would stall a
/// runtime: inside a runtime's `block_on`, or polling one of its tasks. A
/// `spawn_blocking` closure may block: tokio runs it without a cooperative
/// budget, while a task's budget runs out after at most 128 steps, which is what
/// the probe below looks for. (Exhausting a task's budget only makes it yield at
/// its next await, and the task is about to get an error anyway.)
fn in_async_context() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    if tokio::task::try_id().is_none() {
        // Inside `block_on` (the body of `#[tokio::main]`, say), not in a task.
        return true;
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..256 {
        match tokio::task::coop::poll_proceed(&mut cx) {
            std::task::Poll::Ready(restore) => restore.made_progress(),
            std::task::Poll::Pending => return true,
        }
    }
    false
}

/// Runs `future` on `runtime` and waits for it on this thread, which must be
/// allowed to block.
fn run_on<T: Send + 'static>(
    runtime: &OwnedRuntime,
    future: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let Some(handle) = runtime.handle() else {
        return Err(Error::new(ErrorKind::Request)
            .with_message("the blocking client's runtime has stopped"));
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        // The receiver is gone only if the caller's thread unwound.
        let _ = tx.send(future.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(Error::new(ErrorKind::Request)
            .with_message("the blocking client's runtime stopped during the call"))
    })
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
            runtime: Arc::new(OwnedRuntime(Some(runtime))),
        })
    }

    /// Runs a call on the client's runtime; refused in async code.
    fn block_on<T, F>(&self, call: impl FnOnce(AsyncClient) -> F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        if in_async_context() {
            return Err(Error::new(ErrorKind::Request).with_message(
                "the blocking client was called from async code, where it would block a runtime thread; use the async HttpClient there, or call it from tokio::task::spawn_blocking",
            ));
        }
        run_on(&self.runtime, call(self.client.clone()))
    }

    /// `GET endpoint`.
    pub fn get(&self, endpoint: &str) -> Result<Response, Error> {
        let endpoint = endpoint.to_owned();
        self.block_on(move |c| async move { c.get(&endpoint).send().await })
    }

    /// `GET endpoint` with its own per-attempt timeout.
    pub fn get_with_timeout(&self, endpoint: &str, timeout: Duration) -> Result<Response, Error> {
        let endpoint = endpoint.to_owned();
        self.block_on(move |c| async move { c.get(&endpoint).timeout(timeout).send().await })
    }

    /// `POST` of `body` as JSON.
    pub fn post<T: Serialize + ?Sized>(&self, endpoint: &str, body: &T) -> Result<Response, Error> {
        let (endpoint, body) = (endpoint.to_owned(), json(body)?);
        self.block_on(move |c| async move { c.post(&endpoint, &body).send().await })
    }

    /// `POST` of `body` as JSON with its own per-attempt timeout.
    pub fn post_with_timeout<T: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let (endpoint, body) = (endpoint.to_owned(), json(body)?);
        self.block_on(
            move |c| async move { c.post(&endpoint, &body).timeout(timeout).send().await },
        )
    }

    /// A streaming `POST`; read its lines with [`StreamResponse::next_line`] or
    /// iterate over it.
    pub fn stream_post<T: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &T,
    ) -> Result<StreamResponse, Error> {
        let (endpoint, body) = (endpoint.to_owned(), json(body)?);
        let inner =
            self.block_on(move |c| async move { c.stream_post(&endpoint, &body).send().await })?;
        Ok(StreamResponse {
            inner: Some(inner),
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

/// A body serialized once, here, so that the call can own it; sent verbatim.
fn json<T: Serialize + ?Sized>(body: &T) -> Result<Box<serde_json::value::RawValue>, Error> {
    serde_json::value::to_raw_value(body).map_err(|e| {
        Error::new(ErrorKind::Request)
            .with_message(format!("the body does not serialize to JSON: {e}"))
            .with_source(e)
    })
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
    // Lent to the client's runtime for each read; `None` only if a read was
    // cut short by the runtime stopping.
    inner: Option<AsyncStream>,
    runtime: Arc<OwnedRuntime>,
}

impl StreamResponse {
    /// The next non-empty line, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<String>, Error> {
        if in_async_context() {
            return Err(Error::new(ErrorKind::Request)
                .with_message("the blocking stream was read from async code; read it from tokio::task::spawn_blocking"));
        }
        let Some(mut stream) = self.inner.take() else {
            return Err(Error::new(ErrorKind::Request)
                .with_message("the stream was lost when the client's runtime stopped"));
        };
        let (line, stream) = {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let Some(handle) = self.runtime.handle() else {
                return Err(Error::new(ErrorKind::Request)
                    .with_message("the blocking client's runtime has stopped"));
            };
            handle.spawn(async move {
                let line = stream.next_line().await;
                let _ = tx.send((line, stream));
            });
            match rx.recv() {
                Ok(done) => done,
                Err(_) => {
                    return Err(Error::new(ErrorKind::Request)
                        .with_message("the blocking client's runtime stopped during the read"));
                }
            }
        };
        self.inner = Some(stream);
        line
    }

    /// The async stream underneath (`None` only if the client's runtime stopped
    /// during a read).
    pub fn as_async(&self) -> Option<&AsyncStream> {
        self.inner.as_ref()
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
