//! Request IDs: one short ID per logical request, in its header and its logs.
//!
//! [`RequestIdLayer`] gives every request an ID of 8 lowercase hex characters
//! (32 random bits), unless the request already carries a valid `x-request-id`
//! (visible ASCII, 1 to 64 bytes), which is kept. An invalid caller-supplied ID
//! (control characters, non-ASCII bytes, too long) is replaced, never forwarded.
//!
//! The layer sets the `x-request-id` header, puts the [`RequestId`] in the request's
//! extensions, and runs the inner service's future inside a `WARN`-level tracing
//! span named `request` with the fields `request_id`, `method`, `endpoint` and,
//! when set, `provider`. `WARN` is the highest level of any event the crate logs
//! for a call, so even `RUST_LOG=warn` shows those events with their ID.
//!
//! Placed outermost (where [`HttpClient`](crate::HttpClient) makes the same
//! header and span itself), the span wraps every retry and breaker event of the
//! call, so all of a request's log lines carry its ID, and all its attempts send
//! the same header.
//!
//! On a server (an axum `Router`, a hyper service), the same layer keeps a
//! valid incoming `x-request-id` or makes one, echoes it on the response, and
//! makes it the [`current`] ID while the handler runs: an
//! [`HttpClient`](crate::HttpClient) call made while handling the request sends
//! that ID upstream (unless given one with `.request_id()`), and its log lines
//! carry the one `request_id` of the server's span.
//!
//! Which ID a request gets follows one rule everywhere (this layer over
//! `http` and reqwest requests, and [`HttpClient`](crate::HttpClient)): the
//! caller's own (a [`RequestId`] in the extensions, or `.request_id()`), else
//! a valid `x-request-id` header, else the [`current`] ID of the request being
//! handled, else a fresh one. So a stack of these layers over hyper-util,
//! called from an axum handler, sends the handler's ID upstream as the client
//! does.
//!
//! With the feature `reqwest`, the layer also takes a `reqwest::Request`: it
//! sets the header, opens the span and makes the ID current as here, but puts no
//! [`RequestId`] in the extensions, which reqwest keeps private.
//!
//! [`MakeShortRequestId`] offers the same IDs to tower-http's
//! `SetRequestIdLayer`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use stache_resilience::RequestIdLayer;
//! use stache_resilience::request_id::RequestId;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service_fn(|req: http::Request<()>| async move {
//!         let id = req.extensions().get::<RequestId>().cloned().unwrap();
//!         assert_eq!(req.headers()["x-request-id"], id.as_str());
//!         // The handler's current ID, which HttpClient calls inherit.
//!         assert_eq!(stache_resilience::request_id::current(), Some(id));
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//!
//! let res = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! // Echoed on the response.
//! assert_eq!(res.headers()["x-request-id"].len(), 8);
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::future::Future;
use std::pin::Pin;

use http::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;
use tracing::instrument::{Instrument, Instrumented};

tokio::task_local! {
    /// The ID of the request the current task is handling, set by
    /// `RequestIdService` around its inner future.
    static CURRENT: RequestId;
}

/// The ID of the request being handled, while a [`RequestIdLayer`] runs the
/// handler (or the inner service): what an [`HttpClient`](crate::HttpClient)
/// call made there sends upstream when it is not given one.
///
/// `None` outside such a task. Only the future of the layer's inner service
/// sees it: a task it spawns does not (pass the ID on with
/// [`RequestBuilder::request_id`](crate::client::RequestBuilder::request_id)).
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

/// Runs `call` with `id` current, and returns its future scoped the same way.
pub(crate) fn scoped<F: Future>(
    id: RequestId,
    call: impl FnOnce() -> F,
) -> TaskLocalFuture<RequestId, F> {
    let future = CURRENT.sync_scope(id.clone(), call);
    CURRENT.scope(id, future)
}

/// A request's ID as [`choose`] picked it.
pub(crate) struct Chosen {
    pub(crate) id: RequestId,
    /// Taken from the request being handled ([`current`]), whose span already
    /// names it.
    pub(crate) inherited: bool,
}

/// The one rule by which every part of the crate (the layer, over `http` and
/// reqwest requests alike, and [`HttpClient`](crate::HttpClient)) picks a
/// request's ID: the caller's own (`explicit`: a [`RequestId`] in the
/// extensions, or given to `.request_id()`), else a valid `x-request-id`
/// header, else the ID of the request being handled ([`current`]), else a
/// fresh one. An invalid header is replaced, never forwarded.
pub(crate) fn choose(explicit: Option<RequestId>, header: Option<&HeaderValue>) -> Chosen {
    if let Some(id) = explicit {
        return Chosen {
            id,
            inherited: false,
        };
    }
    if let Some(value) = header {
        if let Some(id) = RequestId::parse(value) {
            return Chosen {
                id,
                inherited: false,
            };
        }
        tracing::debug!("replacing an invalid caller-supplied x-request-id");
    }
    match current() {
        Some(id) => Chosen {
            id,
            inherited: true,
        },
        None => Chosen {
            id: RequestId::generate(),
            inherited: false,
        },
    }
}

/// The `x-request-id` header name.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-supplied request ID that is kept, in bytes.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 64;

/// A request's ID; found in the request's extensions after [`RequestIdLayer`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A fresh ID: 8 lowercase hex characters from 32 random bits.
    pub fn generate() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits: u32 = rand::random();
        let mut text = [0u8; 8];
        for (i, byte) in text.iter_mut().enumerate() {
            *byte = HEX[((bits >> (28 - 4 * i)) & 0xf) as usize];
        }
        // One allocation, shared by every clone of the ID (the header of each
        // attempt, the error, the response): a copied slice would allocate again
        // on its first clone.
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text));
        // Hex digits are always a valid header value.
        RequestId(value.unwrap_or(HeaderValue::from_static("00000000")))
    }

    /// Accepts a caller-supplied ID if it is 1 to 64 bytes of visible ASCII
    /// (`!` to `~`): no spaces, control characters or non-ASCII bytes.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use stache_resilience::request_id::RequestId;
    /// assert!(RequestId::parse(&HeaderValue::from_static("abc-123")).is_some());
    /// assert!(RequestId::parse(&HeaderValue::from_static("has space")).is_none());
    /// ```
    pub fn parse(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes.iter().all(|b| (b'!'..=b'~').contains(b));
        valid.then(|| RequestId(value.clone()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The ID as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

/// Makes 8-character IDs for tower-http's `SetRequestIdLayer`, so a server can tag
/// incoming requests the way this crate tags outgoing ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeShortRequestId;

impl tower_http::request_id::MakeRequestId for MakeShortRequestId {
    fn make_request_id<B>(
        &mut self,
        _request: &http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        Some(tower_http::request_id::RequestId::new(
            RequestId::generate().0,
        ))
    }
}

/// Tags requests with an ID and a tracing span; see the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer {
    provider: Option<Arc<str>>,
}

impl RequestIdLayer {
    /// A layer that tags requests, with no provider name on the span.
    pub const fn new() -> Self {
        RequestIdLayer { provider: None }
    }

    /// Records `provider` on each request's span (for example `"ollama"`).
    pub fn provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            provider: self.provider.clone(),
        }
    }
}

/// A service that tags requests with an ID and a span; made by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    pub(crate) inner: S,
    pub(crate) provider: Option<Arc<str>>,
}

impl<S> RequestIdService<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<http::Request<B>> for RequestIdService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let chosen = choose(
            req.extensions().get::<RequestId>().cloned(),
            req.headers().get(X_REQUEST_ID),
        );
        let id = chosen.id;
        // Always: `insert` also drops any further value of the header.
        req.headers_mut().insert(X_REQUEST_ID, id.0.clone());
        let span = if chosen.inherited {
            inner_call_span(req.method(), &req.uri().path(), self.provider.as_deref())
        } else {
            request_span(&req, &id, self.provider.as_deref())
        };
        if req.extensions().get::<RequestId>() != Some(&id) {
            req.extensions_mut().insert(id.clone());
        }
        let header = id.0.clone();
        let inner = &mut self.inner;
        let future = span.in_scope(|| scoped(id, || inner.call(req)));
        ResponseFuture::new(future, header, span)
    }
}

pin_project! {
    /// The future of [`RequestIdService`]: the inner future inside the
    /// request's span, with its ID [`current`]; puts the ID on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<RequestId, F>>,
        id: HeaderValue,
    }
}

impl<F: Future> ResponseFuture<F> {
    fn new(future: TaskLocalFuture<RequestId, F>, id: HeaderValue, span: tracing::Span) -> Self {
        ResponseFuture {
            inner: future.instrument(span),
            id,
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
{
    type Output = Result<http::Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            // Echo the ID, unless the service set one of its own.
            if !response.headers().contains_key(X_REQUEST_ID) {
                response.headers_mut().insert(X_REQUEST_ID, this.id.clone());
            }
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("request_id", &self.id)
            .finish_non_exhaustive()
    }
}

fn request_span<B>(
    req: &http::Request<B>,
    id: &RequestId,
    provider: Option<&str>,
) -> tracing::Span {
    call_span(req.method(), &req.uri().path(), id, provider)
}

/// The `request` span of a call made while handling a request whose span
/// already carries the ID: its method, path and provider, and no second
/// `request_id`.
pub(crate) fn inner_call_span(
    method: &http::Method,
    path: &dyn std::fmt::Display,
    provider: Option<&str>,
) -> tracing::Span {
    let span = tracing::warn_span!(
        "request",
        method = %method,
        endpoint = %path,
        provider = tracing::field::Empty,
    );
    if let Some(provider) = provider {
        span.record("provider", provider);
    }
    span
}

/// The `request` span of one call: its ID, method, path and provider.
///
/// At `WARN`, the highest level of any event the crate emits for a call: a
/// span is shown only where its level passes the filter, and at `INFO` it left
/// the `WARN` lines of `RUST_LOG=warn` ("… Giving up", "circuit breaker
/// opened") without the ID they belong to. With no subscriber, or one that
/// takes no `WARN` from this crate, it costs what a disabled span does.
pub(crate) fn call_span(
    method: &http::Method,
    path: &dyn std::fmt::Display,
    id: &RequestId,
    provider: Option<&str>,
) -> tracing::Span {
    let span = tracing::warn_span!(
        "request",
        request_id = id.as_str(),
        method = %method,
        endpoint = %path,
        provider = tracing::field::Empty,
    );
    if let Some(provider) = provider {
        span.record("provider", provider);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_eight_lowercase_hex_characters_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| RequestId::generate().as_str().to_owned())
            .collect();
        // 1000 draws from 2^32 collide with probability ~1e-4.
        assert!(ids.len() >= 999);
        for id in &ids {
            assert_eq!(id.len(), 8);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
    }

    #[test]
    fn only_visible_ascii_up_to_64_bytes_is_accepted() {
        let ok = |s: &[u8]| RequestId::parse(&HeaderValue::from_bytes(s).unwrap()).is_some();
        assert!(ok(b"a"));
        assert!(ok(&[b'x'; 64]));
        assert!(!ok(&[b'x'; 65]));
        assert!(!ok(b""));
        assert!(!ok(b"a b"));
        assert!(!ok(b"a\tb"));
        assert!(!ok("caf\u{e9}".as_bytes()));
        assert!(!ok(&[0x80, b'a']));
    }

    async fn forwarded_id(header: Option<&[u8]>) -> String {
        use tower::{Service, ServiceExt};
        let mut svc =
            RequestIdLayer::new().layer(tower::service_fn(|req: http::Request<()>| async move {
                let header = req.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
                let ext = req
                    .extensions()
                    .get::<RequestId>()
                    .unwrap()
                    .as_str()
                    .to_owned();
                assert_eq!(header, ext);
                Ok::<_, std::convert::Infallible>(http::Response::new(header))
            }));
        let mut req = http::Request::new(());
        if let Some(value) = header {
            req.headers_mut()
                .insert(X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        }
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], res.body().as_str(), "echoed");
        res.into_body()
    }

    #[tokio::test]
    async fn a_valid_caller_id_is_kept_and_an_invalid_one_replaced() {
        assert_eq!(forwarded_id(Some(b"trace-42")).await, "trace-42");
        for bad in [&b"caf\xc3\xa9"[..], b"has space", &[b'x'; 65]] {
            let id = forwarded_id(Some(bad)).await;
            assert_eq!(id.len(), 8, "{bad:?} was forwarded as {id:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_eq!(forwarded_id(None).await.len(), 8);
    }
}
