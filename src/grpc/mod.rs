//! gRPC over tonic (feature `tonic`): the layers over a `tonic::transport::Channel`.
//!
//! With this feature:
//!
//! * [`RetryLayer`](crate::RetryLayer) takes `http::Request<tonic::body::Body>`
//!   as it is: the body is kept as it is sent (a
//!   [`TeeBody`](crate::retry::TeeBody), up to
//!   [`max_replay_bytes`](crate::retry::RetryConfig::max_replay_bytes)) and sent
//!   again on a retry;
//! * [`GrpcClassifier`] reads a status from
//!   the trailers of a `tonic::body::Body`, so the circuit breaker counts a
//!   failure that comes at the end of a stream;
//! * [`StatusLayer`] turns what the layers refuse into the gRPC status a tonic
//!   client expects, instead of tonic's `Code::Unknown`:
//!
//! | the layers' error | [`tonic::Code`] |
//! | --- | --- |
//! | [`CircuitOpen`] | `Unavailable`, "Circuit breaker OPEN - rejecting request" |
//! | [`Elapsed`] (an attempt's timeout, or the call's deadline), or the channel's [`tonic::TimeoutExpired`] for the `grpc-timeout` the stack sent | `DeadlineExceeded` |
//! | [`PoolTimeout`] (no local slot free), [`RateLimited`] (a rate limit's "not now") | `ResourceExhausted` |
//! | a failed call whose retry the [retry budget](crate::retry::RetryLayer::budget) refused | `ResourceExhausted`, "retry budget exhausted; last attempt: …" |
//! | anything else | as tonic maps it ([`tonic::Status::from_error`]: a refused connection is `Unavailable`) |
//!
//! The conversion is a layer, not a `From` impl: it needs to see the whole
//! call (a refused retry is noticed while the call runs, through a task-local
//! the retry layer sets on its refusal path only).
//!
//! # Example
//!
//! The whole stack over a channel, for a generated client
//! (`tonic_health`'s here); `examples/grpc_client.rs` runs it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use stache_resilience::classify::GrpcClassifier;
//! use stache_resilience::grpc::StatusLayer;
//! use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
//! use stache_resilience::{RequestIdLayer, RetryConfig, RetryLayer, TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let stack = ServiceBuilder::new()
//!     .layer(StatusLayer)
//!     .layer(RequestIdLayer::new())
//!     .layer(CircuitBreakerLayer::new(CircuitBreaker::new(CircuitBreakerConfig::default()))
//!         .classifier(GrpcClassifier::default()))
//!     .layer(RetryLayer::new(RetryConfig::default()).classifier(GrpcClassifier::default()))
//!     .layer(TimeoutLayer::new(Duration::from_secs(5)))
//!     .service(channel);
//! let mut health = tonic_health::pb::health_client::HealthClient::new(stack);
//! let answer = health.check(tonic_health::pb::HealthCheckRequest::default()).await?;
//! println!("{:?}", answer.into_inner().status());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::classify::{GrpcClassifier, GrpcResponseBody, Settle, TrailerBody};
#[cfg(any(doc, test))]
use crate::error::CircuitOpen;
use crate::error::{BoxError, Elapsed, ErrorKind, PoolTimeout, RateLimited, chain};
use crate::retry::{Rebox, ReplayBody, watch_refused};

impl ReplayBody for tonic::body::Body {
    /// Boxes the body again over a [`TeeBody`](crate::retry::TeeBody), and
    /// leaves in `extensions` how to box a copy.
    fn prepare(request: &mut http::Request<Self>, max_replay_bytes: usize) {
        Rebox::tee(request, max_replay_bytes, tonic::body::Body::new);
    }

    /// Never: a tonic body is copied through the request's extensions.
    fn try_clone_body(&self) -> Option<Self> {
        None
    }

    fn try_clone_in(&self, extensions: &http::Extensions) -> Option<Self> {
        Rebox::copy(extensions)
    }
}

impl TrailerBody for tonic::body::Body {
    fn settle_at_end(&mut self, classifier: GrpcClassifier, settle: Settle) -> Option<Settle> {
        let inner = std::mem::take(self);
        *self = tonic::body::Body::new(GrpcResponseBody::new(inner, classifier, settle));
        None
    }
}

/// The gRPC status for an error of the layers; see the table in the [module
/// documentation](self).
pub fn to_status(error: BoxError) -> Status {
    let text = || {
        chain(&*error)
            .find(|e| e.is::<Elapsed>() || e.is::<PoolTimeout>() || e.is::<RateLimited>())
            .map_or_else(|| error.to_string(), ToString::to_string)
    };
    match ErrorKind::of(&*error) {
        Some(ErrorKind::CircuitOpen) => {
            Status::unavailable("Circuit breaker OPEN - rejecting request")
        }
        Some(ErrorKind::Timeout) => Status::deadline_exceeded(text()),
        // "Not now": a local slot or a rate limit refused the call before it left.
        Some(ErrorKind::PoolTimeout | ErrorKind::RateLimited) => Status::resource_exhausted(text()),
        _ => Status::from_error(error),
    }
}

/// Turns the errors of the layers below into [`tonic::Status`]; see the
/// [module documentation](self). Put it outermost.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLayer;

impl<S> Layer<S> for StatusLayer {
    type Service = StatusService<S>;

    fn layer(&self, inner: S) -> StatusService<S> {
        StatusService { inner }
    }
}

/// The service [`StatusLayer`] makes.
#[derive(Debug, Clone)]
pub struct StatusService<S> {
    inner: S,
}

impl<S> StatusService<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B> Service<Req> for StatusService<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Status;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| to_status(error.into()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            refused: false,
        }
    }
}

pin_project! {
    /// The future of [`StatusService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // The retry budget refused a retry of this call.
        refused: bool,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<B>, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let result = ready!(watch_refused(this.refused, || inner.poll(cx)));
        Poll::Ready(match result {
            Err(error) if *this.refused => Err(exhausted(&to_status(error.into()))),
            Err(error) => Err(to_status(error.into())),
            Ok(response) if *this.refused => match failed_status(&response) {
                Some(status) => Err(exhausted(&status)),
                None => Ok(response),
            },
            Ok(response) => Ok(response),
        })
    }
}

/// The status of a trailers-only answer that failed, if it is one.
fn failed_status<B>(response: &http::Response<B>) -> Option<Status> {
    let status = Status::from_header_map(response.headers())?;
    (status.code() != tonic::Code::Ok).then_some(status)
}

/// `RESOURCE_EXHAUSTED` for a call whose retry the budget refused, naming what
/// its last attempt got.
fn exhausted(last: &Status) -> Status {
    Status::resource_exhausted(format!(
        "retry budget exhausted; last attempt: {:?}: {}",
        last.code(),
        last.message()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layers_errors_become_the_codes_a_grpc_caller_expects() {
        let open: BoxError = Box::new(CircuitOpen::new());
        let status = to_status(open);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "Circuit breaker OPEN - rejecting request");
        let other: BoxError = "something else".into();
        assert_eq!(to_status(other).code(), tonic::Code::Unknown);
        let refused: BoxError = Box::new(crate::error::RateLimited::new(
            Some(std::time::Duration::from_secs(3)),
            std::time::Duration::from_secs(1),
        ));
        assert_eq!(to_status(refused).code(), tonic::Code::ResourceExhausted);
    }
}
