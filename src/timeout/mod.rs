//! A deadline on each attempt, with a per-request override.
//!
//! [`TimeoutLayer::new(default)`](TimeoutLayer::new) fails a call that takes
//! longer than `default` with [`Elapsed`] (inside a [`BoxError`]; it names the
//! limit). A request may carry its own limit as a [`RequestTimeout`] in its
//! extensions, which replaces the default for that request alone — a long batch
//! call on a provider whose usual calls are short.
//!
//! Placed below a retry layer, as [`HttpClient`](crate::HttpClient) does, the
//! deadline applies to each attempt, not to the call as a whole.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use stache_resilience::timeout::{Elapsed, RequestTimeout, TimeoutLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(1)))
//!     .service_fn(|_req: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok::<_, std::convert::Infallible>("done")
//!     });
//!
//! let err = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Elapsed>().unwrap().limit(), Duration::from_secs(1));
//!
//! let mut patient = http::Request::new(());
//! patient.extensions_mut().insert(RequestTimeout(Duration::from_secs(10)));
//! assert_eq!(svc.ready().await.unwrap().call(patient).await.unwrap(), "done");
//! # }
//! ```

pub mod error;
pub mod future;

use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;

pub use self::error::Elapsed;

/// A per-request limit that overrides the layer's default; put it in the
/// request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// Applies a deadline to each call; see the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    default: Duration,
}

impl TimeoutLayer {
    /// A layer whose calls fail after `default` unless the request carries a
    /// [`RequestTimeout`].
    pub const fn new(default: Duration) -> Self {
        TimeoutLayer { default }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            default: self.default,
        }
    }
}

/// A service with a deadline on each call; made by [`TimeoutLayer`].
///
/// # Errors
///
/// Inner errors are converted into [`BoxError`]; the layer adds [`Elapsed`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    default: Duration,
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
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let limit = req
            .extensions()
            .get::<RequestTimeout>()
            .map_or(self.default, |t| t.0);
        future::ResponseFuture::new(self.inner.call(req), limit)
    }
}
