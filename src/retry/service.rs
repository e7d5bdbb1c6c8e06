//! [`RetryService`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::backoff::{RetryConfig, Steps};
use super::future::{Again, ResponseFuture};
use http_body::Body;

use super::replay::{Replay, ReplayRequest};
use super::stats::Shared;
use super::tee::TeeBody;
use crate::classify::{ClassifyOutcome, ErrorsAreFailures};

/// A service that retries transient failures; made by [`RetryLayer`](super::RetryLayer).
///
/// # Errors
///
/// Adds no failure mode: the last attempt's result is returned as it was.
///
/// [`TeeBody`]: super::TeeBody
///
/// # Cancellation
///
/// Dropping the response future stops at once, during an attempt or a backoff
/// sleep.
#[derive(Clone)]
pub struct RetryService<S, C = ErrorsAreFailures> {
    inner: S,
    config: RetryConfig,
    shared: Arc<Shared<S>>,
    classifier: C,
    replay: Replay,
}

impl<S, C> RetryService<S, C> {
    pub(super) fn new(
        inner: S,
        config: RetryConfig,
        shared: Arc<Shared<S>>,
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
        req.prepare(self.config.max_replay_bytes);
        self.send(req)
    }
}

/// Requests whose bodies cannot be copied nor boxed again: sent as a
/// [`TeeBody`] over the body, which the inner service takes.
macro_rules! call_teed {
    ($([$($generics:tt)*] $body:ty),* $(,)?) => {$(
        impl<S, C, $($generics)*> Service<http::Request<$body>> for RetryService<S, C>
        where
            $body: Body,
            S: Service<http::Request<TeeBody<$body>>> + Clone,
            S::Error: fmt::Display + 'static,
            C: ClassifyOutcome<S::Response, S::Error> + Clone,
        {
            type Response = S::Response;
            type Error = S::Error;
            type Future = ResponseFuture<S, http::Request<TeeBody<$body>>, C>;

            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                self.inner.poll_ready(cx)
            }

            fn call(&mut self, req: http::Request<$body>) -> Self::Future {
                let max = self.config.max_replay_bytes;
                self.send(req.map(|body| TeeBody::new(body, max)))
            }
        }
    )*};
}

call_teed!([] hyper::body::Incoming, [St] http_body_util::StreamBody<St>);

impl<S, C> RetryService<S, C> {
    /// Sends a prepared request, keeping it for retries.
    #[inline]
    fn send<Req>(&mut self, mut req: Req) -> ResponseFuture<S, Req, C>
    where
        S: Service<Req> + Clone,
        C: Clone,
        Req: ReplayRequest,
    {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        self.shared.stats.count_first();
        // Before any copy is made, so that no attempt carries it.
        let marked = req.take_repeat_mark();
        // The clock is read only when the config bounds the whole call.
        if let Some(total) = self.config.total_timeout {
            let deadline = tokio::time::Instant::now() + total.min(MAX_TOTAL);
            if req.deadline().is_none_or(|d| d > deadline) {
                req.set_deadline(deadline);
            }
        }
        // Copy the request only when a retry is possible at all. The copy is
        // sent and the request kept: a body kept as it is sent ([`TeeBody`])
        // lets only its newest copy read on.
        if self.config.max_retries > 0 {
            if let Some(first) = req.try_clone() {
                let again = Again {
                    request: req,
                    backoff: Steps::new(&self.config),
                    shared: self.shared.clone(),
                    policy: self.replay,
                    marked,
                };
                let response = self.inner.call(first);
                return ResponseFuture::new(
                    response,
                    Some(again),
                    self.config.max_retries,
                    self.classifier.clone(),
                );
            }
            self.shared.unreplayable();
        }
        let response = self.inner.call(req);
        ResponseFuture::new(
            response,
            None,
            self.config.max_retries,
            self.classifier.clone(),
        )
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
