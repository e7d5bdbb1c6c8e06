//! Feature `reqwest`: the layers over `reqwest::Client`, which is a
//! `tower::Service<reqwest::Request>`.
//!
//! * [`RetryLayer`](crate::RetryLayer): a request is replayed through
//!   `reqwest::Request::try_clone` (a streamed body is sent once); whether it is
//!   idempotent comes from its method, or from the
//!   [`SAFE_TO_REPEAT`](crate::retry::SAFE_TO_REPEAT) header, read and removed
//!   before sending, since a `reqwest::Request` has no extensions (so no
//!   [`Idempotent`](crate::retry::Idempotent) extension and no
//!   [`RequestDeadline`](crate::timeout::RequestDeadline) either).
//! * [`RequestIdLayer`](crate::RequestIdLayer): the `x-request-id` header, the
//!   `request` span and the [`current`](crate::request_id::current) ID, as for
//!   `http::Request`.
//! * [`TimeoutLayer`](crate::TimeoutLayer): the layer's limit, or the request's
//!   own `reqwest::Request::timeout` when it has one.
//! * [`HttpClassifier`](crate::classify::HttpClassifier) classifies
//!   `Result<&reqwest::Response, &reqwest::Error>` with the table it uses for
//!   hyper; a `reqwest::Error` that `is_connect()` proves the request unsent.

use std::borrow::Cow;
use std::task::{Context, Poll};

use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;
use tracing::instrument::{Instrument, Instrumented};

use crate::classify::{
    ClassifyOutcome, HttpClassifier, Outcome, classify_error, classify_response,
    error_is_unprocessed, response_is_unprocessed,
};
use crate::error::BoxError;
use crate::request_id::{
    RequestId, RequestIdService, X_REQUEST_ID, call_span, choose, inner_call_span, scoped,
};
use crate::retry::{ReplayRequest, method_is_idempotent, take_mark};
use crate::timeout::TimeoutService;
use crate::timeout::future::ResponseFuture as TimeoutFuture;

impl ReplayRequest for reqwest::Request {
    fn try_clone(&self) -> Option<Self> {
        reqwest::Request::try_clone(self)
    }

    fn is_idempotent(&self) -> bool {
        method_is_idempotent(self.method())
    }

    fn take_repeat_mark(&mut self) -> Option<bool> {
        take_mark(self.headers_mut())
    }
}

impl<S> Service<reqwest::Request> for RequestIdService<S>
where
    S: Service<reqwest::Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<TaskLocalFuture<RequestId, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: reqwest::Request) -> Self::Future {
        let chosen = choose(None, req.headers().get(X_REQUEST_ID));
        let id = chosen.id;
        req.headers_mut()
            .insert(X_REQUEST_ID, id.header_value().clone());
        let span = if chosen.inherited {
            inner_call_span(req.method(), &req.url().path(), self.provider.as_deref())
        } else {
            call_span(
                req.method(),
                &req.url().path(),
                &id,
                self.provider.as_deref(),
            )
        };
        let inner = &mut self.inner;
        let future = span.in_scope(|| scoped(id, || inner.call(req)));
        future.instrument(span)
    }
}

impl<S> Service<reqwest::Request> for TimeoutService<S>
where
    S: Service<reqwest::Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        let limit = req.timeout().copied().unwrap_or(self.default);
        TimeoutFuture::new(self.inner.call(req), limit)
    }
}

impl<E: 'static> ClassifyOutcome<reqwest::Response, E> for HttpClassifier {
    fn classify(&self, result: Result<&reqwest::Response, &E>) -> Outcome {
        match result {
            Ok(response) => classify_response(response.status(), response.headers()),
            Err(error) => classify_error(error),
        }
    }

    fn describe(&self, response: &reqwest::Response) -> Cow<'static, str> {
        Cow::Owned(response.status().to_string())
    }

    fn is_unprocessed(&self, result: Result<&reqwest::Response, &E>) -> bool {
        match result {
            Ok(response) => response_is_unprocessed(response.status(), response.headers()),
            Err(error) => error_is_unprocessed(error),
        }
    }
}
