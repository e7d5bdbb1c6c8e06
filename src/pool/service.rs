//! [`PoolLimitService`], and the markers that keep a slot with a response.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::PollSemaphore;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::error::{BoxError, PoolTimeout};

/// Put into a request's extensions to keep its slot until the *response* is
/// dropped rather than until the response future completes — for responses whose
/// body is still being read (streams).
///
/// The slot then travels in the response's extensions, and is freed when they
/// (and every clone of them) are dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldSlot;

/// A service with a limit on calls in flight; made by [`PoolLimitLayer`](super::PoolLimitLayer).
///
/// `poll_ready` reserves a slot, as tower's `ConcurrencyLimit` does: it is
/// `Pending` while every slot is taken, so a `Buffer` or a balancer above sees
/// the truth. It never fails: when no slot came within the pool timeout it
/// reports ready, and the call it then takes fails at once with [`PoolTimeout`]
/// without touching the inner service (the way tower's `LoadShed` refuses).
///
/// # Clone
///
/// Clones share the slots, but not a slot reserved by `poll_ready`: a clone
/// starts unready.
pub struct PoolLimitService<S> {
    inner: S,
    semaphore: PollSemaphore,
    timeout: Duration,
    /// Reserved by `poll_ready`, spent by `call`.
    permit: Option<OwnedSemaphorePermit>,
    /// Started by the first `Pending` of a wait for a slot; boxed, as only a
    /// full pool needs one.
    waiting: Option<Pin<Box<Sleep>>>,
    /// No slot came within the timeout: the next call fails.
    timed_out: bool,
}

impl<S> PoolLimitService<S> {
    pub(super) fn new(inner: S, semaphore: Arc<Semaphore>, timeout: Duration) -> Self {
        PoolLimitService {
            inner,
            semaphore: PollSemaphore::new(semaphore),
            timeout,
            permit: None,
            waiting: None,
            timed_out: false,
        }
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for PoolLimitService<S> {
    fn clone(&self) -> Self {
        PoolLimitService::new(
            self.inner.clone(),
            self.semaphore.clone_inner(),
            self.timeout,
        )
    }
}

impl<S: fmt::Debug> fmt::Debug for PoolLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLimitService")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("reserved", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for PoolLimitService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.timed_out {
            return Poll::Ready(Ok(()));
        }
        if self.permit.is_none() {
            match self.semaphore.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => {
                    self.permit = Some(permit);
                    self.waiting = None;
                }
                // The layer never closes its semaphore.
                Poll::Ready(None) => {
                    return Poll::Ready(Err("the pool's slots were closed".into()));
                }
                Poll::Pending => {
                    let timeout = self.timeout;
                    let waiting = self
                        .waiting
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if waiting.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.waiting = None;
                    self.timed_out = true;
                    // Leave the queue: a slot handed to this service later
                    // would sit here unused until its next call.
                    self.semaphore = PollSemaphore::new(self.semaphore.clone_inner());
                    return Poll::Ready(Ok(()));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if std::mem::take(&mut self.timed_out) {
            return ResponseFuture::failed(Box::new(PoolTimeout::new(self.timeout)));
        }
        let permit = match self.permit.take() {
            Some(permit) => permit,
            // Called without `poll_ready` (a broken contract): a free slot
            // still serves, a full pool refuses rather than overrun its limit.
            None => match self.semaphore.clone_inner().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    return ResponseFuture::failed(
                        "PoolLimitService called without a slot reserved by poll_ready".into(),
                    );
                }
            },
        };
        let hold = req.extensions().get::<HoldSlot>().is_some();
        ResponseFuture::called(self.inner.call(req), permit, hold)
    }
}
