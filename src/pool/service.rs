//! [`PoolLimitService`], and the markers that keep a slot with a response.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_service::Service;

use super::future::{ResponseFuture, State, Waiting};
use crate::error::BoxError;

/// Put into a request's extensions to keep its slot until the *response* is
/// dropped rather than until the response future completes — for responses whose
/// body is still being read (streams).
///
/// The slot then travels in the response's extensions, and is freed when they
/// (and every clone of them) are dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldSlot;

/// A service with a limit on calls in flight; made by [`PoolLimitLayer`](super::PoolLimitLayer).
#[derive(Debug, Clone)]
pub struct PoolLimitService<S> {
    inner: S,
    semaphore: Arc<Semaphore>,
    timeout: Duration,
}

impl<S> PoolLimitService<S> {
    pub(super) fn new(inner: S, semaphore: Arc<Semaphore>, timeout: Duration) -> Self {
        PoolLimitService {
            inner,
            semaphore,
            timeout,
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
