//! [`RetryService`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::backoff::RetryConfig;
use super::future::{Again, ResponseFuture};
use super::replay::{Replay, ReplayRequest};
use super::stats::Shared;
use crate::classify::{ClassifyOutcome, ErrorsAreFailures};

/// A service that retries transient failures; made by [`RetryLayer`](super::RetryLayer).
///
/// # Errors
///
/// Adds no failure mode: the last attempt's result is returned as it was.
///
/// # Cancellation
///
/// Dropping the response future stops at once, during an attempt or a backoff
/// sleep.
#[derive(Clone)]
pub struct RetryService<S, C = ErrorsAreFailures> {
    inner: S,
    config: RetryConfig,
    shared: Arc<Shared>,
    classifier: C,
    replay: Replay,
}

impl<S, C> RetryService<S, C> {
    pub(super) fn new(
        inner: S,
        config: RetryConfig,
        shared: Arc<Shared>,
        classifier: C,
        replay: Replay,
    ) -> Self {
        RetryService {
            inner,
            config,
            shared,
            classifier,
            replay,
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for RetryService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: fmt::Display + 'static,
    C: ClassifyOutcome<S::Response, S::Error> + Clone,
    Req: ReplayRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        // The clock is read only when the config bounds the whole call.
        if let Some(total) = self.config.total_timeout {
            let deadline = tokio::time::Instant::now() + total.min(MAX_TOTAL);
            if req.deadline().is_none_or(|d| d > deadline) {
                req.set_deadline(deadline);
            }
        }
        // Copy the request only when a retry is possible at all.
        let replay = if self.config.max_retries > 0 {
            let copy = req.try_clone();
            if copy.is_none() {
                self.shared.unreplayable();
            }
            copy.map(|request| Again {
                // The ready service takes this call; a clone, made ready again
                // later, takes the retries.
                service: self.inner.clone(),
                request: Some(request),
                backoff: self.config.backoff(),
                shared: self.shared.clone(),
                policy: self.replay,
            })
        } else {
            None
        };
        let response = self.inner.call(req);
        ResponseFuture::new(response, replay, self.config, self.classifier.clone())
    }
}

/// The longest `total_timeout` honoured (a year): an `Instant` cannot hold much
/// more than a few hundred years past now, and adding `Duration::MAX` would panic.
const MAX_TOTAL: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for RetryService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish()
    }
}
