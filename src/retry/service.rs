//! [`RetryService`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::backoff::RetryConfig;
use super::future::{Replay, ResponseFuture};
use super::replay::ReplayRequest;
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
}

impl<S, C> RetryService<S, C> {
    pub(super) fn new(inner: S, config: RetryConfig, shared: Arc<Shared>, classifier: C) -> Self {
        RetryService {
            inner,
            config,
            shared,
            classifier,
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

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        // Copy the request only when a retry is possible at all.
        let replay = if self.config.max_retries > 0 {
            req.try_clone().map(|request| Replay {
                // The ready service takes this call; a clone, made ready again
                // later, takes the retries.
                service: self.inner.clone(),
                request: Some(request),
                backoff: self.config.backoff(),
                shared: self.shared.clone(),
            })
        } else {
            None
        };
        let response = self.inner.call(req);
        ResponseFuture::new(response, replay, self.config, self.classifier.clone())
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for RetryService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish()
    }
}
