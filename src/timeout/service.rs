//! [`TimeoutService`] and the per-request [`RequestTimeout`].

use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::future::ResponseFuture;
use crate::deadline::{Attempts, RequestDeadline};
use crate::error::BoxError;

/// A per-request limit that overrides the layer's default; put it in the
/// request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// A service with a deadline on each call; made by [`TimeoutLayer`](super::TimeoutLayer).
///
/// # Errors
///
/// Inner errors are converted into [`BoxError`]; the layer adds [`Elapsed`](super::Elapsed).
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    pub(crate) inner: S,
    pub(crate) default: Duration,
}

impl<S> TimeoutService<S> {
    /// Wraps `inner` with a default limit.
    pub const fn new(inner: S, default: Duration) -> Self {
        TimeoutService { inner, default }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for TimeoutService<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let extensions = req.extensions();
        let limit = extensions
            .get::<RequestTimeout>()
            .map_or(self.default, |t| t.0);
        // The clock is read only for a request that has a deadline.
        if let Some(&RequestDeadline(deadline)) = extensions.get::<RequestDeadline>() {
            if let Some(attempts) = extensions.get::<Attempts>() {
                attempts.count();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left <= limit {
                return ResponseFuture::until(self.inner.call(req), deadline, left);
            }
        }
        ResponseFuture::new(self.inner.call(req), limit)
    }
}
