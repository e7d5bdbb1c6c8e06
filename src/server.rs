//! For servers: turning the layers' errors into HTTP answers, so that
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) and
//! [`TimeoutLayer`](crate::TimeoutLayer) go on an axum `Router` (which wants
//! services that never fail) without a hand-written `HandleErrorLayer`.
//!
//! [`ErrorResponseLayer`] answers:
//!
//! | error ([`ErrorKind::of`]) | status | headers |
//! | --- | --- | --- |
//! | [`CircuitOpen`] | 503 Service Unavailable | `Retry-After` (default 5 s) |
//! | [`PoolTimeout`] | 503 Service Unavailable | `Retry-After` |
//! | [`RateLimited`] (the limiter's "not now") | 429 Too Many Requests | `Retry-After`: the wait the limiter named, else the default |
//! | a provider's own 429, after the client's retries | 429 Too Many Requests | `Retry-After`: the wait the provider asked for, else the default |
//! | [`Elapsed`] (a timeout or the deadline) | 504 Gateway Timeout | |
//! | the provider failed (connect, transport, an error status, a bad body) | 502 Bad Gateway | |
//! | anything else (a handler's own error, its own I/O errors included, a bad request or config) | 500 Internal Server Error | |
//!
//! The same table holds for a [`crate::Error`] from an
//! [`HttpClient`](crate::HttpClient) call: `error_response(&err, ..)` turns a
//! handler's failed call into its answer in one line. The body is the status's
//! reason phrase: an error's own text may describe the service's internals, so
//! it is logged (at `WARN`) rather than sent.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use stache_resilience::server::ErrorResponseLayer;
//! use stache_resilience::TimeoutLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(ErrorResponseLayer::new())
//!     .layer(TimeoutLayer::new(Duration::from_millis(10)))
//!     .service_fn(|_req: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     });
//! let res = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 504);
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, Error, ErrorKind, RateLimited, chain};
#[cfg(doc)]
use crate::error::{CircuitOpen, Elapsed, PoolTimeout};

/// Turns a service's errors into HTTP answers; see the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct ErrorResponseLayer {
    retry_after: Duration,
}

impl ErrorResponseLayer {
    /// A layer that asks callers refused by an open circuit to come back in 5 s.
    pub const fn new() -> Self {
        ErrorResponseLayer {
            retry_after: Duration::from_secs(5),
        }
    }

    /// Sets the `Retry-After` of a 503 (rounded up to whole seconds, at least 1).
    pub const fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }
}

impl Default for ErrorResponseLayer {
    fn default() -> Self {
        ErrorResponseLayer::new()
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse {
            inner,
            retry_after: self.retry_after,
        }
    }
}

/// A service whose errors become HTTP answers; made by [`ErrorResponseLayer`].
///
/// # Errors
///
/// None: its error type is [`Infallible`]. A failure to become ready is
/// answered by the next call, with the status its error maps to.
#[derive(Debug, Clone)]
pub struct ErrorResponse<S> {
    inner: S,
    retry_after: Duration,
}

impl<S, Req, B> Service<Req> for ErrorResponse<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: From<&'static str>,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The error of an inner service that cannot take calls is the call's
        // answer; report ready and let `call` find it again.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            retry_after: self.retry_after,
        }
    }
}

pin_project! {
    /// The future of [`ErrorResponse`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        retry_after: Duration,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    B: From<&'static str>,
{
    type Output = Result<http::Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(Ok(match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(error) => error_response(&*error.into(), *this.retry_after),
        }))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The status a provider answered, when `error` is a client's error that
/// carries one.
fn provider_status(error: &(dyn std::error::Error + 'static)) -> Option<StatusCode> {
    chain(error)
        .find_map(|e| e.downcast_ref::<Error>())
        .and_then(Error::status)
}

/// The answer for `error`, as [`ErrorResponseLayer`] gives it (see the table in
/// the [module documentation](self)), for a handler or an axum
/// `HandleErrorLayer` of one's own; the error is logged at `WARN`.
///
/// Takes any error: a layer's [`BoxError`] (`&*error`) or the client's
/// [`crate::Error`] (`&error`).
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::rate_limit::RateLimited;
/// use stache_resilience::server::error_response;
///
/// let refused = RateLimited::new(Some(Duration::from_millis(2_500)), Duration::from_secs(1));
/// let answer: http::Response<String> = error_response(&refused, Duration::from_secs(5));
/// assert_eq!(answer.status(), 429);
/// assert_eq!(answer.headers()["retry-after"], "3");
/// ```
pub fn error_response<B: From<&'static str>>(
    error: &(dyn std::error::Error + 'static),
    retry_after: Duration,
) -> http::Response<B> {
    let (status, wait) = match ErrorKind::of(error) {
        Some(ErrorKind::CircuitOpen | ErrorKind::PoolTimeout) => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(retry_after))
        }
        Some(ErrorKind::RateLimited) => {
            let named = chain(error)
                .find_map(|e| e.downcast_ref::<RateLimited>())
                .and_then(RateLimited::wait);
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some(named.unwrap_or(retry_after)),
            )
        }
        // The provider's own "not now", after the client's retries: passed on
        // with the wait it asked for.
        Some(ErrorKind::Status)
            if provider_status(error) == Some(StatusCode::TOO_MANY_REQUESTS) =>
        {
            let asked = chain(error)
                .find_map(|e| e.downcast_ref::<Error>())
                .and_then(Error::retry_after);
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some(asked.unwrap_or(retry_after)),
            )
        }
        Some(ErrorKind::Timeout) => (StatusCode::GATEWAY_TIMEOUT, None),
        Some(
            ErrorKind::Connect
            | ErrorKind::Transport
            | ErrorKind::Status
            | ErrorKind::Body
            | ErrorKind::Decode,
        ) => (StatusCode::BAD_GATEWAY, None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    tracing::warn!(status = status.as_u16(), "answering an error: {error}");
    let mut response = http::Response::new(B::from(status.canonical_reason().unwrap_or("error")));
    *response.status_mut() = status;
    if let Some(wait) = wait {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}
