//! The response future of [`PoolLimitService`](super::PoolLimitService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::BoxError;

/// A slot held by a response whose request carried [`HoldSlot`](super::HoldSlot); the slot is
/// freed when the last clone of this value is dropped.
#[derive(Debug, Clone)]
pub(crate) struct PoolSlot {
    /// Held only to be dropped with the response.
    _permit: Arc<OwnedSemaphorePermit>,
}

impl PoolSlot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        PoolSlot {
            _permit: Arc::new(permit),
        }
    }
}

pin_project! {
    /// The future returned by [`PoolLimitService`](super::PoolLimitService).
    ///
    /// # Cancellation
    ///
    /// Dropping it frees its slot.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<OwnedSemaphorePermit>,
            hold: bool,
        },
        // Refused before the inner service was called.
        Failed { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn called(future: F, permit: OwnedSemaphorePermit, hold: bool) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                permit: Some(permit),
                hold,
            },
        }
    }

    pub(super) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                permit,
                hold,
            } => {
                let result = ready!(future.poll(cx));
                let permit = permit.take();
                Poll::Ready(match result {
                    Ok(mut response) => {
                        if let (true, Some(permit)) = (*hold, permit) {
                            response.extensions_mut().insert(PoolSlot::new(permit));
                        }
                        Ok(response)
                    }
                    Err(e) => Err(e.into()),
                })
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "`pool::ResponseFuture` polled after completion".into()))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
