//! The bottom of a provider's stack: the pooled hyper-util client, its connector
//! (connect and write timeouts, TLS), and a service that reads buffered bodies
//! inside the attempt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{ReadBody, ResponseBody};
use super::config::{HttpClientConfig, HttpVersion};
use super::h2_watch::{LearnH2, SendBody, Watch};
#[cfg(feature = "metrics")]
use crate::classify::{classify_error, classify_response};
use crate::error::{BoxError, ConfigError};
use crate::read_ahead::ExpectStream;
use crate::redact::RedactedUri;
use crate::request_id::X_REQUEST_ID;
use crate::retry::ReplayBody;
#[cfg(feature = "metrics")]
use crate::telemetry;

#[cfg(feature = "rustls")]
type Connector = LearnH2<TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>>;
#[cfg(not(feature = "rustls"))]
type Connector = LearnH2<TimeoutConnector<HttpConnector>>;

pub(crate) type HyperClient = Client<Connector, SendBody>;

#[cfg(feature = "compression")]
type SendFuture = tower_http::decompression::ResponseFuture<legacy::ResponseFuture>;
#[cfg(not(feature = "compression"))]
type SendFuture = legacy::ResponseFuture;

/// The body of a request in the client's stack: the bytes to send, and what the
/// transport builds each attempt's headers from. The request's own header map
/// stays empty, so the copy the retry layer keeps for later attempts costs a few
/// reference counts, not a header map.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub(crate) body: Bytes,
    /// The client's template for this kind of request, shared.
    pub(crate) headers: Arc<HeaderMap>,
    /// Headers set on this request alone.
    pub(crate) extra: Option<Arc<HeaderMap>>,
    pub(crate) id: HeaderValue,
    /// The call's own word on whether it is safe to repeat.
    pub(crate) idempotent: Option<bool>,
    /// The client's `post_is_idempotent`, for a POST or PATCH without one.
    pub(crate) post_is_idempotent: bool,
}

impl ReplayBody for Outgoing {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }

    fn idempotency(&self, method: &http::Method) -> Option<bool> {
        self.idempotent.or_else(|| {
            matches!(*method, http::Method::POST | http::Method::PATCH)
                .then_some(self.post_is_idempotent)
        })
    }
}

/// A response body: read in full inside the attempt, or left to the caller.
pub(crate) enum ClientBody {
    Buffered(Bytes),
    Streaming(ResponseBody),
}

/// An empty buffered body: what an answer injected by a
/// [`ChaosLayer`](crate::chaos::ChaosLayer) carries.
impl Default for ClientBody {
    fn default() -> Self {
        ClientBody::Buffered(Bytes::new())
    }
}

/// The body as a stream of frames, for the layers that read it
/// ([`ReadAheadLayer`](crate::read_ahead::ReadAheadLayer)): a buffered body is
/// one frame of known length, so it is never read ahead.
impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Buffered(bytes) if bytes.is_empty() => Poll::Ready(None),
            ClientBody::Buffered(bytes) => {
                Poll::Ready(Some(Ok(http_body::Frame::data(std::mem::take(bytes)))))
            }
            ClientBody::Streaming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Buffered(bytes) => bytes.is_empty(),
            ClientBody::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ClientBody::Buffered(bytes) => http_body::SizeHint::with_exact(bytes.len() as u64),
            ClientBody::Streaming(body) => body.size_hint(),
        }
    }
}

impl fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientBody::Buffered(bytes) => write!(f, "Buffered({} bytes)", bytes.len()),
            ClientBody::Streaming(_) => f.write_str("Streaming"),
        }
    }
}

pub(crate) fn build_client(
    config: &HttpClientConfig,
    known_h2: Arc<AtomicBool>,
) -> Result<HyperClient, ConfigError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));

    // ALPN offers what the version setting allows; hyper-util then speaks
    // HTTP/2 on a connection whose handshake agreed on `h2`.
    #[cfg(feature = "rustls")]
    let inner = {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config)?)
            .https_or_http();
        match config.http_version {
            HttpVersion::Http1Only => builder.enable_http1().wrap_connector(http),
            HttpVersion::Http2PriorKnowledge => builder.enable_http2().wrap_connector(http),
            _ => builder.enable_http1().enable_http2().wrap_connector(http),
        }
    };
    #[cfg(not(feature = "rustls"))]
    let inner = http;

    // hyper-timeout bounds the whole connect (TCP and TLS) and every socket
    // write that stalls; hyper-util has no write timeout of its own.
    let mut connector = TimeoutConnector::new(inner);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_write_timeout(Some(config.write_timeout));
    let connector = LearnH2 {
        inner: connector,
        known: known_h2,
    };

    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(config.keepalive_expiry)
        .pool_max_idle_per_host(config.max_keepalive_connections)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(config.http_version == HttpVersion::Http2PriorKnowledge)
        .http2_keep_alive_interval(config.http2_keep_alive_interval)
        .http2_keep_alive_timeout(config.http2_keep_alive_timeout)
        // Pings while no call is in flight too: a connection that died while
        // idle is found before the next call is put on it (and a call that is
        // not safe to repeat fails on it).
        .http2_keep_alive_while_idle(config.http2_keep_alive_interval.is_some());
    Ok(builder.build(connector))
}

#[cfg(feature = "rustls")]
fn tls_config(config: &HttpClientConfig) -> Result<rustls::ClientConfig, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (i, cert) in config.extra_root_certificates.iter().enumerate() {
        let bad = |e: &dyn fmt::Display| {
            ConfigError::new(
                "extra_root_certificates",
                format!("certificate {i} is not usable: {e}"),
            )
        };
        let ders: Vec<CertificateDer<'static>> = if cert.starts_with(b"-----BEGIN") {
            CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?
        } else {
            vec![CertificateDer::from(cert.clone())]
        };
        if ders.is_empty() {
            return Err(bad(&"no certificate found"));
        }
        for der in ders {
            roots.add(der).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("extra_root_certificates", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Sends one attempt and, unless the request is marked [`ExpectStream`], reads the
/// whole body (at most `max_response_bytes`) before answering — so the attempt's
/// timeout covers the body and a body that breaks mid-way is retried.
///
/// Everything sits behind one `Arc`: the stack is cloned for every call (and
/// once more for its retries), and one reference count is cheaper to bump than
/// the handful a hyper-util client holds.
#[derive(Clone)]
pub(crate) struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    client: HyperClient,
    max_response_bytes: usize,
    h2: H2,
    /// The provider label of the attempt metrics.
    #[cfg(feature = "metrics")]
    label: Arc<str>,
}

impl Transport {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(config: &HttpClientConfig, label: Arc<str>) -> Result<Self, ConfigError> {
        let prior_knowledge = config.http_version == HttpVersion::Http2PriorKnowledge;
        let known = Arc::new(AtomicBool::new(prior_knowledge));
        Ok(Transport {
            inner: Arc::new(TransportInner {
                client: build_client(config, known.clone())?,
                max_response_bytes: config.max_response_bytes,
                h2: H2 {
                    known,
                    in_flight: AtomicUsize::new(0),
                    write_timeout: config.write_timeout,
                    pool_timeout: config.pool_timeout,
                },
                #[cfg(feature = "metrics")]
                label,
            }),
        })
    }
}

/// What the transport knows of HTTP/2, to bound a stream's silent waits (see
/// [`h2_watch`](super::h2_watch)).
struct H2 {
    /// Whether the server speaks HTTP/2: configured, or agreed on by a
    /// connection ([`LearnH2`]).
    known: Arc<AtomicBool>,
    /// Attempts in flight once it is known: only while there are some can a
    /// new stream be queued for a slot.
    in_flight: AtomicUsize,
    write_timeout: std::time::Duration,
    pool_timeout: std::time::Duration,
}

/// An HTTP/2 attempt: counted in [`H2::in_flight`] until it is dropped, and
/// its body watched until it is sent whole.
struct H2Attempt {
    transport: Arc<TransportInner>,
    watch: Option<Watch>,
}

impl Drop for H2Attempt {
    fn drop(&mut self) {
        self.transport.h2.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Transport {
    /// The body of an attempt: whole, or over HTTP/2 watched, the attempt
    /// counted in flight until it ends. Boxed, so that an HTTP/1 attempt's
    /// future carries one empty pointer for it.
    fn body(&self, bytes: Bytes) -> (SendBody, Option<Box<H2Attempt>>) {
        let h2 = &self.inner.h2;
        if !h2.known.load(Ordering::Relaxed) {
            return (SendBody::whole(bytes), None);
        }
        let others = h2.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut attempt = H2Attempt {
            transport: self.inner.clone(),
            watch: None,
        };
        if bytes.is_empty() {
            return (SendBody::whole(bytes), Some(Box::new(attempt)));
        }
        let queued_bound = (others > 0).then_some(h2.pool_timeout);
        let (body, watch) = Watch::body(bytes, queued_bound, h2.write_timeout);
        attempt.watch = Some(watch);
        (body, Some(Box::new(attempt)))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl Service<http::Request<Outgoing>> for Transport {
    type Response = http::Response<ClientBody>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // hyper-util's legacy client is always ready: it queues for a connection
        // inside the response future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Outgoing>) -> Self::Future {
        let inner = &*self.inner;
        let (mut parts, outgoing) = req.into_parts();
        let mut headers = HeaderMap::clone(&outgoing.headers);
        if let Some(extra) = &outgoing.extra {
            // A request's own header replaces the template's of that name, and
            // keeps every value it was given.
            for name in extra.keys() {
                headers.remove(name);
            }
            for (name, value) in extra.iter() {
                headers.append(name.clone(), value.clone());
            }
        }
        // Headers a layer above put on the request itself.
        if !parts.headers.is_empty() {
            headers.extend(std::mem::take(&mut parts.headers));
        }
        // The request's ID wins over any header of the same name.
        headers.insert(X_REQUEST_ID, outgoing.id);
        parts.headers = headers;
        let (body, h2) = self.body(outgoing.body);
        let req = http::Request::from_parts(parts, body);
        let streaming = req.extensions().get::<ExpectStream>().is_some();
        tracing::debug!(method = %req.method(), uri = %RedactedUri(req.uri()), "sending attempt");
        // With `compression`: `accept-encoding: gzip, br, zstd` unless the
        // request has its own, and the body decoded as it is read, so that
        // `max_response_bytes` bounds what it decodes to.
        #[cfg(feature = "compression")]
        let future = tower_http::decompression::Decompression::new(&inner.client)
            .no_deflate()
            .call(req);
        #[cfg(not(feature = "compression"))]
        let future = inner.client.request(req);
        TransportFuture {
            state: TransportState::Sending { future },
            h2,
            streaming,
            limit: inner.max_response_bytes,
            #[cfg(feature = "metrics")]
            timer: AttemptTimer::start(inner.label.clone()),
            #[cfg(not(feature = "metrics"))]
            timer: AttemptTimer,
        }
    }
}

pin_project! {
    pub(crate) struct TransportFuture {
        #[pin]
        state: TransportState,
        // Over HTTP/2, the attempt's count and the watch of its body's waits.
        h2: Option<Box<H2Attempt>>,
        streaming: bool,
        limit: usize,
        timer: AttemptTimer,
    }
}

pin_project! {
    #[project = TransportStateProj]
    enum TransportState {
        Sending { #[pin] future: SendFuture },
        Reading { #[pin] body: ReadBody, parts: Option<http::response::Parts> },
    }
}

impl Future for TransportFuture {
    type Output = Result<http::Response<ClientBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match poll_attempt(this.state, *this.streaming, *this.limit, cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let Some(watch) = this.h2.as_mut().and_then(|h2| h2.watch.as_mut()) else {
                    return Poll::Pending;
                };
                // Checked only while the answer is awaited: a server may
                // answer before it has read the whole body.
                match watch.poll_stalled(cx) {
                    Poll::Ready(stalled) => Err(stalled),
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        this.timer.finish(&result);
        Poll::Ready(result)
    }
}

/// Names the error in a failed answer's body, for the layers above (a
/// [`ProviderError`](crate::provider::ProviderError) in its extensions): a
/// spent quota or a refused key is not retried, and cools the provider down.
#[cold]
#[inline(never)]
fn name_error(response: &mut http::Response<ClientBody>) {
    let named = match response.body() {
        ClientBody::Buffered(body) => {
            crate::provider::ProviderError::parse(response.status(), body)
        }
        ClientBody::Streaming(_) => None,
    };
    if let Some(named) = named {
        response.extensions_mut().insert(named);
    }
}

/// Drives one attempt: the response head, then (unless streaming) the body.
fn poll_attempt(
    mut state: Pin<&mut TransportState>,
    streaming: bool,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<http::Response<ClientBody>, BoxError>> {
    loop {
        match state.as_mut().project() {
            TransportStateProj::Sending { future } => {
                let response = ready!(future.poll(cx))?;
                #[cfg(feature = "compression")]
                let response = response.map(Box::pin);
                if streaming {
                    return Poll::Ready(Ok(response.map(ClientBody::Streaming)));
                }
                let (parts, body) = response.into_parts();
                state.set(TransportState::Reading {
                    body: ReadBody::new(body, limit),
                    parts: Some(parts),
                });
            }
            TransportStateProj::Reading { body, parts } => {
                let body = ready!(body.poll(cx))?;
                let Some(parts) = parts.take() else {
                    panic!("the transport's future polled after completion");
                };
                let mut response = http::Response::from_parts(parts, ClientBody::Buffered(body));
                if response.status().as_u16() >= 400 {
                    name_error(&mut response);
                }
                return Poll::Ready(Ok(response));
            }
        }
    }
}

/// Times one attempt for `stache_attempt_duration_seconds`, and counts it in
/// `stache_attempts_total`. An attempt dropped before it finished (its timeout
/// fired, or the caller gave up) is recorded as `cancelled`.
#[cfg(feature = "metrics")]
struct AttemptTimer {
    label: Arc<str>,
    started: std::time::Instant,
    done: bool,
}

#[cfg(feature = "metrics")]
impl AttemptTimer {
    fn start(label: Arc<str>) -> Self {
        AttemptTimer {
            label,
            started: std::time::Instant::now(),
            done: false,
        }
    }

    fn finish(&mut self, result: &Result<http::Response<ClientBody>, BoxError>) {
        let outcome = match result {
            Ok(response) => classify_response(response.status(), response.headers()),
            Err(error) => classify_error(error),
        };
        self.record(outcome.label());
    }

    fn record(&mut self, outcome: &'static str) {
        self.done = true;
        ::metrics::histogram!(
            telemetry::ATTEMPT_DURATION,
            "provider" => self.label.clone(),
            "outcome" => outcome
        )
        .record(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(feature = "metrics")]
impl Drop for AttemptTimer {
    fn drop(&mut self) {
        if !self.done {
            self.record("cancelled");
        }
    }
}

/// Without the `metrics` feature the timer is nothing at all.
#[cfg(not(feature = "metrics"))]
struct AttemptTimer;

#[cfg(not(feature = "metrics"))]
impl AttemptTimer {
    #[inline(always)]
    fn finish(&mut self, _result: &Result<http::Response<ClientBody>, BoxError>) {}
}
