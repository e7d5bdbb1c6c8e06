//! The response future of [`PoolLimitService`](super::PoolLimitService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tokio::time::Sleep;
use tower_service::Service;

use crate::error::{BoxError, PoolTimeout};

/// A slot held by a response whose request carried [`HoldSlot`](super::HoldSlot); the slot is
/// freed when the last clone of this value is dropped.
#[derive(Debug, Clone)]
pub(crate) struct PoolSlot {
    /// Held only to be dropped with the response.
    _permit: Arc<OwnedSemaphorePermit>,
}

impl PoolSlot {
    pub(super) fn new(permit: OwnedSemaphorePermit) -> Self {
        PoolSlot {
            _permit: Arc::new(permit),
        }
    }
}

/// Waiting for a slot.
pub(super) type Acquire =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

pin_project! {
    /// The future returned by [`PoolLimitService`](super::PoolLimitService).
    ///
    /// # Cancellation
    ///
    /// Dropping it frees its slot, or leaves the queue if it was waiting.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        pub(super) state: State<S, Req>,
        pub(super) hold: bool,
    }
}

pin_project! {
    /// The slow path, boxed so that the common case (a free slot) carries none of
    /// its weight through every layer above.
    #[project = WaitingProj]
    pub(super) struct Waiting<S, Req> {
        pub(super) acquire: Acquire,
        #[pin]
        pub(super) deadline: Sleep,
        pub(super) waited: Duration,
        pub(super) service: Option<S>,
        pub(super) request: Option<Req>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<S, Req>
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
                        panic!("`pool::ResponseFuture` polled after completion");
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
                                    response.extensions_mut().insert(PoolSlot::new(permit));
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
