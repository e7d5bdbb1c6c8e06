//! The response future of [`TimeoutService`](super::TimeoutService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{BoxError, Elapsed};

pin_project! {
    /// The future returned by [`TimeoutService`](super::TimeoutService).
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
        limit: Duration,
        // Whether the sleep ends at the call's deadline rather than the limit.
        deadline: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, limit: Duration) -> Self {
        ResponseFuture {
            future,
            sleep: tokio::time::sleep(limit),
            limit,
            deadline: false,
        }
    }

    /// An attempt cut at `deadline`, `left` from now.
    pub(crate) fn until(future: F, deadline: tokio::time::Instant, left: Duration) -> Self {
        ResponseFuture {
            future,
            sleep: tokio::time::sleep_until(deadline),
            limit: left,
            deadline: true,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.future.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) if *this.deadline => {
                Poll::Ready(Err(Box::new(Elapsed::deadline(*this.limit))))
            }
            Poll::Ready(()) => Poll::Ready(Err(Box::new(Elapsed::new(*this.limit)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
