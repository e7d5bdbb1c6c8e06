//! A limit on calls in flight, with a bounded wait for a free slot.
//!
//! [`PoolLimitLayer`] lets at most `max` calls run through the inner service at
//! once. A call that finds every slot taken waits for one, but no longer than the
//! pool timeout; then it fails with [`PoolTimeout`] without touching the inner
//! service. A pool timeout is local congestion, not a sign that the remote service
//! is sick, so the classifiers neither retry it nor count it against the breaker.
//!
//! Over a hyper-util client this caps the connections one provider can open (an
//! HTTP/1 connection carries one request at a time), which is how
//! [`HttpClient`](crate::HttpClient) enforces `max_connections` and
//! `pool_timeout`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use stache_resilience::pool::{PoolLimitLayer, PoolTimeout};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(PoolLimitLayer::new(1, Duration::from_millis(10)))
//!     .service_fn(|req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//! let res = svc.ready().await.unwrap().call(http::Request::new(())).await;
//! assert!(res.is_ok());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;

/// The error returned when no slot came free within the pool timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTimeout {
    waited: Duration,
}

impl PoolTimeout {
    /// Creates the error for a wait of `waited`.
    pub const fn new(waited: Duration) -> Self {
        PoolTimeout { waited }
    }

    /// How long the call waited for a slot.
    pub const fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for PoolTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no free connection slot after waiting {:?} (all max_connections in use)",
            self.waited
        )
    }
}

impl std::error::Error for PoolTimeout {}

/// Put into a request's extensions to keep its slot until the *response* is
/// dropped rather than until the response future completes — for responses whose
/// body is still being read (streams).
///
/// The slot is then found in the response's extensions as a [`PoolSlot`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldSlot;

/// A slot held by a response whose request carried [`HoldSlot`]; the slot is
/// freed when the last clone of this value is dropped.
#[derive(Debug, Clone)]
pub struct PoolSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Limits calls in flight; see the [module documentation](self).
///
/// # Clone
///
/// Every service made by one layer, and every clone, shares its slots.
#[derive(Debug, Clone)]
pub struct PoolLimitLayer {
    semaphore: Arc<Semaphore>,
    timeout: Duration,
}

impl PoolLimitLayer {
    /// At most `max` calls in flight (0 is treated as 1); a call waits at most
    /// `timeout` for a slot.
    pub fn new(max: usize, timeout: Duration) -> Self {
        PoolLimitLayer {
            semaphore: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            timeout,
        }
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

impl<S> Layer<S> for PoolLimitLayer {
    type Service = PoolLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PoolLimitService {
            inner,
            semaphore: self.semaphore.clone(),
            timeout: self.timeout,
        }
    }
}

/// A service with a limit on calls in flight; made by [`PoolLimitLayer`].
#[derive(Debug, Clone)]
pub struct PoolLimitService<S> {
    inner: S,
    semaphore: Arc<Semaphore>,
    timeout: Duration,
}

impl<S> PoolLimitService<S> {
    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for PoolLimitService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, http::Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let hold = req.extensions().get::<HoldSlot>().is_some();
        // Fast path: a free slot, no allocation and no timer.
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return ResponseFuture {
                state: State::Called {
                    future: self.inner.call(req),
                    permit: Some(permit),
                },
                hold,
            };
        }
        // Slow path: wait for a slot in the future, with the service that was made
        // ready (a fresh clone stays behind for the next call).
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture {
            state: State::Waiting {
                waiting: Box::pin(Waiting {
                    acquire: Box::pin(self.semaphore.clone().acquire_owned()),
                    deadline: tokio::time::sleep(self.timeout),
                    waited: self.timeout,
                    service: Some(ready),
                    request: Some(req),
                }),
            },
            hold,
        }
    }
}

pin_project! {
    /// The future returned by [`PoolLimitService`].
    ///
    /// # Cancellation
    ///
    /// Dropping it frees its slot, or leaves the queue if it was waiting.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        hold: bool,
    }
}

pin_project! {
    /// The slow path, boxed so that the common case (a free slot) carries none of
    /// its weight through every layer above.
    #[project = WaitingProj]
    struct Waiting<S, Req> {
        acquire: Acquire,
        #[pin]
        deadline: Sleep,
        waited: Duration,
        service: Option<S>,
        request: Option<Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Waiting {
            waiting: Pin<Box<Waiting<S, Req>>>,
        },
        Called {
            #[pin]
            future: S::Future,
            permit: Option<OwnedSemaphorePermit>,
        },
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, http::Request<ReqBody>>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<http::Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { waiting } => {
                    let WaitingProj {
                        acquire,
                        deadline,
                        waited,
                        service,
                        request,
                    } = waiting.as_mut().project();
                    let permit = match acquire.as_mut().poll(cx) {
                        Poll::Ready(Ok(permit)) => permit,
                        Poll::Ready(Err(closed)) => return Poll::Ready(Err(Box::new(closed))),
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            return Poll::Ready(Err(Box::new(PoolTimeout::new(*waited))));
                        }
                    };
                    let (Some(mut service), Some(request)) = (service.take(), request.take())
                    else {
                        // Only reachable if polled again after an early return above.
                        return Poll::Ready(Err("pool future polled after completion".into()));
                    };
                    let future = service.call(request);
                    this.state.set(State::Called {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    let permit = permit.take();
                    return Poll::Ready(match result {
                        Ok(mut response) => {
                            if *this.hold {
                                if let Some(permit) = permit {
                                    response.extensions_mut().insert(PoolSlot(Arc::new(permit)));
                                }
                            }
                            Ok(response)
                        }
                        Err(e) => Err(e.into()),
                    });
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
