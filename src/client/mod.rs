//! [`HttpClient`]: one provider's resilient, pooled JSON client.
//!
//! A call runs through the provider's stack:
//!
//! ```text
//! RequestId -> CircuitBreaker -> Retry -> Timeout -> PoolLimit -> hyper-util client
//! ```
//!
//! so it gets one request ID for all its attempts (in the `x-request-id` header
//! of each, and on a `request` span around the whole call, as
//! [`RequestIdLayer`](crate::RequestIdLayer) does), is refused at once while the
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

pub(crate) mod config;
mod lines;
mod response;
pub(crate) mod transport;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use serde::Serialize;
use tower::util::Oneshot;
use tower::{ServiceBuilder, ServiceExt};

use crate::circuit_breaker::{CircuitBreakerService, CircuitState};
use crate::classify::HttpClassifier;
use crate::error::{Error, ErrorKind, MAX_ERROR_BODY_BYTES};
use crate::pool::{HoldSlot, PoolLimitLayer, PoolLimitService};
use crate::retry::{RetryLayer, RetryService, RetryStats};
use crate::timeout::{RequestTimeout, TimeoutLayer, TimeoutService};
use crate::{CircuitBreaker, CircuitBreakerLayer, RequestId};

pub use self::config::HttpClientConfig;
pub use self::response::{Response, StreamResponse};
use self::transport::{ClientBody, Outgoing, Streaming, Transport};

/// The provider's stack below the request-ID step, which the client does itself
/// (see [`Exec`]).
type Stack = CircuitBreakerService<
    RetryService<TimeoutService<PoolLimitService<Transport>>, HttpClassifier>,
    HttpClassifier,
>;

type StackRequest = http::Request<Outgoing>;

/// A resilient HTTP client for one provider; see the [module documentation](self).
///
/// # Clone
///
/// Cheap: clones share one connection pool, one circuit breaker, one retry
/// budget and one set of stats. Use [`ServiceRegistry`](crate::ServiceRegistry) to
/// share one client per provider across an application.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: HttpClientConfig,
    /// `base_url` without a trailing slash.
    base: String,
    /// The headers of every attempt, chosen by whether the request has a JSON
    /// body and whether its answer is streamed; see [`Templates`].
    templates: Templates,
    stack: Stack,
    breaker: CircuitBreaker,
    counters: Arc<Counters>,
    retry_stats: Arc<RetryStats>,
    pool: PoolLimitLayer,
    provider: Option<Arc<str>>,
    /// The `provider` label of the metrics: the provider name, or `default`.
    #[cfg(feature = "metrics")]
    label: Arc<str>,
}

impl HttpClient {
    /// Builds a client, checking `config` first.
    ///
    /// # Errors
    ///
    /// A configuration error ([`ErrorKind::Config`]) naming the field and rule.
    pub fn new(config: HttpClientConfig) -> Result<Self, Error> {
        Self::build(None, config)
    }

    /// Builds a client whose request spans carry `provider` (as
    /// [`ServiceRegistry`](crate::ServiceRegistry) does).
    pub fn for_provider(provider: &str, config: HttpClientConfig) -> Result<Self, Error> {
        Self::build(Some(Arc::from(provider)), config)
    }

    fn build(provider: Option<Arc<str>>, config: HttpClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let base = config.base_url.trim_end_matches('/').to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let user_agent = HeaderValue::try_from(config.user_agent.as_str())
            .map_err(|_| crate::ConfigError::new("user_agent", "must be a valid header value"))?;
        headers.insert(USER_AGENT, user_agent);
        for (name, value) in &config.headers {
            let mut value = value.clone();
            if config::is_sensitive(name) {
                value.set_sensitive(true);
            }
            headers.insert(name.clone(), value);
        }
        let templates = Templates::new(headers);

        let counters = Arc::new(Counters::default());
        let label: Arc<str> = provider.clone().unwrap_or_else(|| Arc::from("default"));
        #[cfg(feature = "metrics")]
        let breaker = CircuitBreaker::labelled(config.breaker_config(), label.clone());
        #[cfg(not(feature = "metrics"))]
        let breaker = CircuitBreaker::new(config.breaker_config());
        let retry = RetryLayer::new(config.retry_config());
        #[cfg(feature = "metrics")]
        let retry = retry.labelled(label.clone());
        let mut retry = retry.classifier(HttpClassifier);
        if !config.retry_budget {
            retry = retry.without_budget();
        }
        let retry_stats = retry.stats();
        let pool = PoolLimitLayer::new(config.max_connections, config.pool_timeout);
        let transport = Transport::new(
            transport::build_client(&config)?,
            config.max_response_bytes,
            counters.clone(),
            label.clone(),
        );
        let stack = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
            .layer(retry)
            .layer(TimeoutLayer::new(config.default_timeout))
            .layer(pool.clone())
            .service(transport);
        Ok(HttpClient {
            inner: Arc::new(ClientInner {
                config,
                base,
                templates,
                stack,
                breaker,
                counters,
                retry_stats,
                pool,
                provider,
                #[cfg(feature = "metrics")]
                label,
            }),
        })
    }

    /// A `GET` of `endpoint` (appended to the base URL).
    pub fn get<'a>(&'a self, endpoint: &'a str) -> RequestBuilder<'a> {
        RequestBuilder::new(self, Method::GET, endpoint, Ok(None))
    }

    /// A `POST` of `body`, serialized as JSON, to `endpoint`.
    pub fn post<'a, T: Serialize + ?Sized>(
        &'a self,
        endpoint: &'a str,
        body: &T,
    ) -> RequestBuilder<'a> {
        RequestBuilder::new(self, Method::POST, endpoint, json_body(body))
    }

    /// A request with any method; add a body with [`RequestBuilder::json`].
    pub fn request<'a>(&'a self, method: Method, endpoint: &'a str) -> RequestBuilder<'a> {
        RequestBuilder::new(self, method, endpoint, Ok(None))
    }

    /// A `POST` whose response is read as it arrives, line by line (NDJSON).
    pub fn stream_post<'a, T: Serialize + ?Sized>(
        &'a self,
        endpoint: &'a str,
        body: &T,
    ) -> StreamRequestBuilder<'a> {
        StreamRequestBuilder {
            request: RequestBuilder::new(self, Method::POST, endpoint, json_body(body)),
        }
    }

    /// The provider's circuit breaker.
    pub fn circuit_breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &HttpClientConfig {
        &self.inner.config
    }

    /// The provider name given to [`for_provider`](Self::for_provider), if any.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// Settings and live counters.
    pub fn stats(&self) -> ClientStats {
        let inner = &*self.inner;
        let c = &inner.counters;
        let config = &inner.config;
        ClientStats {
            base_url: config.base_url.clone(),
            default_timeout: config.default_timeout,
            max_connections: config.max_connections,
            max_keepalive_connections: config.max_keepalive_connections,
            max_retries: config.max_retries,
            retry_base_delay: config.retry_base_delay,
            retry_max_delay: config.retry_max_delay,
            circuit_breaker_state: inner.breaker.state(),
            circuit_breaker_threshold: config.circuit_breaker_threshold,
            requests: c.requests.load(Ordering::Relaxed),
            attempts: c.attempts.load(Ordering::Relaxed),
            retries: inner.retry_stats.retries(),
            rejected: c.rejected.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            free_connection_slots: inner.pool.available(),
        }
    }

    fn count_failure(&self, kind: ErrorKind) {
        self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metric_count(
            crate::telemetry_names::FAILURES,
            Some(crate::telemetry::failure_class(kind)),
        );
        let _ = kind;
    }

    /// Increments a metrics counter labelled with the provider (and `outcome`).
    #[inline]
    fn metric_count(&self, name: &'static str, outcome: Option<&'static str>) {
        #[cfg(feature = "metrics")]
        {
            let provider = self.inner.label.clone();
            match outcome {
                Some(outcome) => {
                    ::metrics::counter!(name, "provider" => provider, "outcome" => outcome)
                        .increment(1)
                }
                None => ::metrics::counter!(name, "provider" => provider).increment(1),
            }
        }
        let _ = (name, outcome);
    }

    /// Starts a call: counts it, gives it its ID and span, and builds its
    /// request, unless the open circuit refuses it first.
    fn start(&self, builder: RequestBuilder<'_>, streaming: bool) -> Result<Started<'_>, Error> {
        let counters = &*self.inner.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        self.metric_count(crate::telemetry_names::REQUESTS, None);
        let in_flight = InFlight::enter(counters);
        let id = builder.request_id.unwrap_or_else(RequestId::generate);
        if self.inner.breaker.refuses_now() {
            // The breaker layer would refuse this call too; refusing here skips
            // building a request that would never be sent.
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.metric_count(crate::telemetry_names::BREAKER_REJECTIONS, None);
            return Err(Error::from_stack(Box::new(crate::CircuitOpen::new())).with_request_id(id));
        }
        let request = self.build_request(
            builder.method,
            builder.endpoint,
            builder.body,
            builder.headers,
            builder.timeout,
            streaming,
            &id,
        );
        let request = match request {
            Ok(request) => request,
            Err(e) => return Err(e.with_request_id(id)),
        };
        let span = crate::request_id::request_span(&request, &id, self.provider());
        Ok(Started {
            request,
            id,
            span,
            in_flight,
        })
    }

    /// Counts and wraps an error from the stack.
    fn stack_error(&self, error: crate::BoxError, id: RequestId) -> Error {
        let error = Error::from_stack(error).with_request_id(id);
        if error.is_circuit_open() {
            self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.metric_count(crate::telemetry_names::BREAKER_REJECTIONS, None);
        } else {
            self.count_failure(error.kind());
        }
        error
    }

    #[allow(clippy::too_many_arguments)]
    fn build_request(
        &self,
        method: Method,
        endpoint: &str,
        body: Result<Option<Bytes>, Error>,
        extra_headers: HeaderMap,
        timeout: Option<Duration>,
        streaming: bool,
        id: &RequestId,
    ) -> Result<StackRequest, Error> {
        let body = body?;
        if !endpoint.is_empty() && !endpoint.starts_with('/') && !endpoint.starts_with('?') {
            return Err(Error::new(ErrorKind::Request).with_message(format!(
                "endpoint {endpoint:?} must be a path starting with '/'"
            )));
        }
        // One allocation of the exact size, which the URI then keeps without a copy.
        let base = &self.inner.base;
        let mut url = String::with_capacity(base.len() + endpoint.len());
        url.push_str(base);
        url.push_str(endpoint);
        let uri = http::Uri::try_from(url).map_err(|e| {
            Error::new(ErrorKind::Request)
                .with_message(format!("endpoint {endpoint:?} does not form a valid URL"))
                .with_source(e)
        })?;
        // The request's own header map stays empty: the transport builds each
        // attempt's headers from the shared template, so the copy the retry layer
        // keeps costs a few reference counts rather than a header map.
        let outgoing = Outgoing {
            headers: self.inner.templates.pick(body.is_some(), streaming).clone(),
            extra: (!extra_headers.is_empty()).then(|| Arc::new(extra_headers)),
            id: id.header_value().clone(),
            body: body.unwrap_or_default(),
        };
        let mut request = http::Request::new(outgoing);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        // Nothing below the client reads the ID from the extensions, so it is not
        // put there: that would cost three allocations, and three more for every
        // copy the retry layer keeps.
        let extensions = request.extensions_mut();
        if let Some(limit) = timeout {
            extensions.insert(RequestTimeout(limit));
        }
        if streaming {
            extensions.insert(Streaming);
            extensions.insert(HoldSlot);
        }
        Ok(request)
    }

    /// Turns a buffered answer into the caller's result.
    fn finish(
        &self,
        response: http::Response<ClientBody>,
        id: RequestId,
    ) -> Result<Response, Error> {
        let (parts, body) = response.into_parts();
        let body = match body {
            ClientBody::Buffered(bytes) => bytes,
            // Only requests marked `Streaming` come back unread; never hand back
            // an empty body in place of one that was not read.
            ClientBody::Streaming(_) => {
                return Err(Error::new(ErrorKind::Body)
                    .with_message("expected a buffered body")
                    .with_request_id(id));
            }
        };
        if parts.status.is_success() {
            return Ok(Response::new(parts.status, parts.headers, body, id));
        }
        self.count_failure(ErrorKind::Status);
        Err(Error::from_status(parts.status, parts.headers, &body).with_request_id(id))
    }

    async fn send_streaming(&self, builder: RequestBuilder<'_>) -> Result<StreamResponse, Error> {
        let idle = self.inner.config.stream_idle_timeout;
        let (response, id) = Exec::new(builder, true).await?;
        let (parts, body) = response.into_parts();
        let body = match body {
            ClientBody::Streaming(body) => body,
            ClientBody::Buffered(_) => {
                return Err(Error::new(ErrorKind::Body)
                    .with_message("expected a streamed body")
                    .with_request_id(id));
            }
        };
        if !parts.status.is_success() {
            self.count_failure(ErrorKind::Status);
            // Keep the start of the error body, without waiting on a stalled one.
            let text =
                tokio::time::timeout(idle, Limited::new(body, MAX_ERROR_BODY_BYTES).collect())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
            return Err(Error::from_status(parts.status, parts.headers, &text).with_request_id(id));
        }
        Ok(StreamResponse::new(
            http::Response::from_parts(parts, body),
            id,
            idle,
            self.inner.config.max_line_bytes,
        ))
    }
}

fn json_body<T: Serialize + ?Sized>(body: &T) -> Result<Option<Bytes>, Error> {
    serde_json::to_vec(body)
        .map(|v| Some(Bytes::from(v)))
        .map_err(|e| {
            Error::new(ErrorKind::Request)
                .with_message(format!("the body does not serialize to JSON: {e}"))
                .with_source(e)
        })
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.inner.provider)
            .field("config", &self.inner.config)
            .field("breaker", &self.inner.breaker)
            .finish()
    }
}

/// The header templates of a client: the defaults, the user agent, JSON content
/// negotiation, and a placeholder `x-request-id` that each attempt overwrites in
/// place (so the copy never grows).
struct Templates {
    plain: Arc<HeaderMap>,
    json: Arc<HeaderMap>,
    stream: Arc<HeaderMap>,
    stream_json: Arc<HeaderMap>,
}

impl Templates {
    fn new(mut base: HeaderMap) -> Self {
        base.insert(
            crate::request_id::X_REQUEST_ID,
            HeaderValue::from_static("00000000"),
        );
        let with = |base: &HeaderMap, name, value| {
            let mut headers = base.clone();
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        let json = with(&base, CONTENT_TYPE, "application/json");
        let stream = with(&base, ACCEPT, "application/x-ndjson");
        let stream_json = with(&json, ACCEPT, "application/x-ndjson");
        Templates {
            plain: Arc::new(base),
            json: Arc::new(json),
            stream: Arc::new(stream),
            stream_json: Arc::new(stream_json),
        }
    }

    fn pick(&self, json: bool, streaming: bool) -> &Arc<HeaderMap> {
        match (json, streaming) {
            (false, false) => &self.plain,
            (true, false) => &self.json,
            (false, true) => &self.stream,
            (true, true) => &self.stream_json,
        }
    }
}

// ===== request builders =====

/// A request being prepared; `.await` it to send it.
///
/// Built by [`HttpClient::get`], [`HttpClient::post`] and
/// [`HttpClient::request`].
#[must_use = "a request does nothing until it is awaited"]
pub struct RequestBuilder<'a> {
    client: &'a HttpClient,
    method: Method,
    endpoint: &'a str,
    body: Result<Option<Bytes>, Error>,
    headers: HeaderMap,
    timeout: Option<Duration>,
    request_id: Option<RequestId>,
}

impl<'a> RequestBuilder<'a> {
    fn new(
        client: &'a HttpClient,
        method: Method,
        endpoint: &'a str,
        body: Result<Option<Bytes>, Error>,
    ) -> Self {
        RequestBuilder {
            client,
            method,
            endpoint,
            body,
            headers: HeaderMap::new(),
            timeout: None,
            request_id: None,
        }
    }

    /// Overrides the provider's per-attempt timeout for this request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = json_body(body);
        self
    }

    /// Adds a header for this request only.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sends the request under `id` instead of a fresh one — to carry an incoming
    /// request's ID on to the calls it makes.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// Sends the request; the same as `.await`.
    pub fn send(self) -> Pending<'a> {
        Pending {
            exec: Exec::new(self, false),
        }
    }
}

impl<'a> IntoFuture for RequestBuilder<'a> {
    type Output = Result<Response, Error>;
    type IntoFuture = Pending<'a>;

    fn into_future(self) -> Self::IntoFuture {
        self.send()
    }
}

pin_project! {
    /// A request in progress; from [`RequestBuilder::send`] or `.await` on a
    /// [`RequestBuilder`]. Resolves to the [`Response`] or the call's [`Error`].
    ///
    /// Nothing happens until it is first polled. Dropping it cancels the call:
    /// the attempt in flight is abandoned, and the breaker records no outcome.
    #[must_use = "a request does nothing until it is awaited"]
    pub struct Pending<'a> {
        #[pin]
        exec: Exec<'a>,
    }
}

impl Future for Pending<'_> {
    type Output = Result<Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let exec = self.project().exec;
        let client = exec.client;
        let (response, id) = ready!(exec.poll(cx))?;
        Poll::Ready(client.finish(response, id))
    }
}

impl fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("request_id", &self.exec.id)
            .finish_non_exhaustive()
    }
}

/// What [`HttpClient::start`] hands to [`Exec`].
struct Started<'a> {
    request: StackRequest,
    id: RequestId,
    span: tracing::Span,
    in_flight: InFlight<'a>,
}

pin_project! {
    /// One call through the stack, written out by hand rather than as an
    /// `async fn`, so that [`Pending`] has a name and needs no box.
    ///
    /// It does what [`RequestIdLayer`](crate::RequestIdLayer) would at the top of
    /// the stack (the ID in the header, the `request` span around every poll of
    /// the call), without putting the ID in the request's extensions.
    struct Exec<'a> {
        client: &'a HttpClient,
        streaming: bool,
        // Set by the first poll, taken by the last.
        id: Option<RequestId>,
        span: tracing::Span,
        in_flight: Option<InFlight<'a>>,
        // One state at a time, so the future is as large as its largest state
        // rather than the sum of them.
        #[pin]
        state: ExecState<'a>,
    }
}

pin_project! {
    #[project = ExecProj]
    enum ExecState<'a> {
        // Not polled yet. Empty once `start` has failed.
        Start { builder: Option<RequestBuilder<'a>> },
        // tower's ready-then-call, on a clone of the client's stack.
        Called { #[pin] future: Oneshot<Stack, StackRequest> },
        Done,
    }
}

const POLLED_AFTER_COMPLETION: &str = "`Pending` polled after completion";

impl<'a> Exec<'a> {
    fn new(builder: RequestBuilder<'a>, streaming: bool) -> Self {
        Exec {
            client: builder.client,
            streaming,
            id: None,
            span: tracing::Span::none(),
            in_flight: None,
            state: ExecState::Start {
                builder: Some(builder),
            },
        }
    }
}

impl Future for Exec<'_> {
    type Output = Result<(http::Response<ClientBody>, RequestId), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let client = *this.client;
        let result = loop {
            match this.state.as_mut().project() {
                ExecProj::Start { builder } => {
                    let builder = builder.take().expect(POLLED_AFTER_COMPLETION);
                    let started = client.start(builder, *this.streaming)?;
                    *this.id = Some(started.id);
                    *this.span = started.span;
                    *this.in_flight = Some(started.in_flight);
                    let future = client.inner.stack.clone().oneshot(started.request);
                    this.state.set(ExecState::Called { future });
                }
                ExecProj::Called { future } => {
                    let _entered = this.span.enter();
                    break ready!(future.poll(cx));
                }
                ExecProj::Done => panic!("{POLLED_AFTER_COMPLETION}"),
            }
        };
        this.state.set(ExecState::Done);
        *this.in_flight = None;
        let id = this.id.take().expect(POLLED_AFTER_COMPLETION);
        Poll::Ready(match result {
            Ok(response) => Ok((response, id)),
            Err(e) => Err(client.stack_error(e, id)),
        })
    }
}

impl fmt::Debug for RequestBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A streaming request being prepared; `.await` it to get a [`StreamResponse`].
#[must_use = "a request does nothing until it is awaited"]
pub struct StreamRequestBuilder<'a> {
    request: RequestBuilder<'a>,
}

impl<'a> StreamRequestBuilder<'a> {
    /// Overrides the time allowed until the response headers arrive.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request = self.request.timeout(timeout);
        self
    }

    /// Sends the request under `id` instead of a fresh one.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request = self.request.request_id(id);
        self
    }

    /// Sends the request; the same as `.await`.
    pub async fn send(self) -> Result<StreamResponse, Error> {
        let client = self.request.client;
        client.send_streaming(self.request).await
    }
}

impl<'a> IntoFuture for StreamRequestBuilder<'a> {
    type Output = Result<StreamResponse, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for StreamRequestBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StreamRequestBuilder")
            .field(&self.request)
            .finish()
    }
}

// ===== stats =====

/// A client's settings and live counters; from [`HttpClient::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ClientStats {
    /// The base URL.
    pub base_url: String,
    /// Per-attempt timeout (seconds when serialized).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub default_timeout: Duration,
    /// Requests in flight at once.
    pub max_connections: usize,
    /// Idle connections kept.
    pub max_keepalive_connections: usize,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay (seconds when serialized).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub retry_base_delay: Duration,
    /// Backoff cap (seconds when serialized).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs"))]
    pub retry_max_delay: Duration,
    /// The breaker's state now.
    pub circuit_breaker_state: CircuitState,
    /// Consecutive failures that open the circuit.
    pub circuit_breaker_threshold: u32,
    /// Calls made (each counts once, whatever its retries).
    pub requests: u64,
    /// Attempts sent to the server (first attempts and retries).
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls refused by the open circuit.
    pub rejected: u64,
    /// Calls that ended in an error other than an open circuit.
    pub failures: u64,
    /// Calls in progress now.
    pub in_flight: u64,
    /// Connection slots free now (of `max_connections`).
    pub free_connection_slots: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    attempts: AtomicU64,
    rejected: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicU64,
}

impl Counters {
    pub(crate) fn count_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a call as in flight until dropped, even if the caller drops its future.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// ===== body errors =====

/// A buffered response body was larger than `max_response_bytes`.
///
/// Found in the source chain of an [`Error`] whose [`kind`](Error::kind) is
/// [`ErrorKind::Body`]. Not retried: the next answer would be as large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: usize,
}

impl BodyTooLarge {
    pub(crate) fn new(limit: usize) -> Self {
        BodyTooLarge { limit }
    }

    /// The limit that was exceeded, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response body is larger than max_response_bytes ({} bytes)",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}

/// Reading a response body failed part-way (the connection broke, the body was
/// shorter than announced, a line was too long).
#[derive(Debug)]
pub struct BodyError {
    source: Option<crate::BoxError>,
    message: String,
}

impl BodyError {
    pub(crate) fn new(source: impl Into<crate::BoxError>) -> Self {
        let source = source.into();
        BodyError {
            message: format!("reading the response body failed: {source}"),
            source: Some(source),
        }
    }

    pub(crate) fn msg(message: String) -> Self {
        BodyError {
            source: None,
            message,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<HttpClient>();
    is::<Error>();
    is::<Response>();
    is::<StatusCode>();
}

fn _assert_send() {
    fn is<T: Send>() {}
    // A task that awaits a request must stay spawnable.
    is::<Pending<'static>>();
    is::<RequestBuilder<'static>>();
}
