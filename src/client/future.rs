//! A call in progress: [`Pending`] for buffered answers, and the [`Exec`]
//! future that it and [`send_streaming`](super::stream::send_streaming) run the
//! stack with.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::call::{Call, Limits};
use super::explain::explain;
use super::http_client::{ClientInner, HttpClient, Stack, StackBody, StackRequest};
use super::models::ModelStacks;
use super::response::Response;
use super::transport::ClientBody;
use crate::circuit_breaker::CircuitBreakerService;
use crate::classify::HttpClassifier;
use crate::error::{BoxError, Elapsed, Error, ErrorKind};
use crate::rate_limit::TokenReservation;
use crate::request_id::{RequestId, X_REQUEST_ID, call_span, choose, inner_call_span};

pin_project! {
    /// A request in progress; from
    /// [`RequestBuilder::send`](super::RequestBuilder::send) or `.await` on a
    /// [`RequestBuilder`](super::RequestBuilder). Resolves to the [`Response`] or the call's [`Error`].
    ///
    /// Nothing happens until it is first polled. Dropping it cancels the call:
    /// the attempt in flight is abandoned, and the breaker records no outcome.
    ///
    /// # Panics
    ///
    /// Polling it again after it has completed panics, as the futures of `std`
    /// and tower do.
    #[must_use = "a request does nothing until it is awaited"]
    pub struct Pending {
        #[pin]
        exec: Exec,
    }
}

impl Pending {
    pub(super) fn new(client: HttpClient, call: Call) -> Self {
        Pending {
            exec: Exec::new(client, call, false),
        }
    }
}

impl Future for Pending {
    type Output = Result<Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut exec = self.project().exec;
        let settles = exec.as_ref().get_ref().client().inner.settles_tokens;
        let result = ready!(exec.as_mut().poll(cx))
            .and_then(|(response, id)| buffered(response, id, settles));
        Poll::Ready(exec.as_ref().get_ref().client().counted(result))
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("request_id", &self.exec.id)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Counts how a call ended, once, whichever way it ended.
    pub(super) fn counted<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(error) = &result {
            self.inner.counters.call_failed(error);
        }
        result
    }
}

/// Turns a buffered answer into the caller's result.
fn buffered(
    response: http::Response<StackBody>,
    id: RequestId,
    settles: bool,
) -> Result<Response, Error> {
    let (parts, body) = response.into_parts();
    let body = match body.into_unread() {
        Ok(ClientBody::Buffered(bytes)) => bytes,
        // Only requests marked `ExpectStream` come back unread; never hand back
        // an empty body in place of one that was not read.
        Ok(ClientBody::Streaming(_)) | Err(_) => {
            return Err(Error::new(ErrorKind::Body)
                .with_message("bad response body: expected a buffered body")
                .with_request_id(id));
        }
    };
    if parts.status.is_success() {
        // The tokens the call reserved, corrected to what it used.
        if let Some(tokens) = settles
            .then(|| parts.extensions.get::<TokenReservation>())
            .flatten()
        {
            if let Some(usage) = crate::provider::Usage::from_json(&body) {
                tokens.clone().settle(usage.total());
            }
        }
        return Ok(Response::new(parts.status, parts.headers, body, id));
    }
    Err(Error::from_status(parts.status, parts.headers, &body).with_request_id(id))
}

pin_project! {
    /// One call through the stack, written out by hand rather than as an
    /// `async fn`, so that [`Pending`] has a name and needs no box.
    ///
    /// It picks the call's ID by the rule [`RequestIdLayer`](crate::request_id::RequestIdLayer)
    /// follows (the ID in the header, the `request` span around every poll of
    /// the call), without putting the ID in the request's extensions, then
    /// runs the stack: [`CircuitBreakerLayer`](crate::CircuitBreakerLayer)
    /// first, whose refusal ends the call before its request is built.
    pub(super) struct Exec {
        client: Tracked,
        streaming: bool,
        // The call's limits: set by the first poll, unless given.
        limits: Limits,
        limits_given: bool,
        // Set by the first poll, taken by the last.
        id: Option<RequestId>,
        span: tracing::Span,
        // One state at a time, so the future is as large as its largest state
        // rather than the sum of them.
        #[pin]
        state: ExecState,
    }
}

/// The future of a call the stack took: the breaker's, around the rest.
type Called = <Stack as Service<StackRequest>>::Future;

pin_project! {
    #[project = ExecProj]
    enum ExecState {
        // Not polled yet. Empty once the call has started, or failed to.
        Start { call: Option<Call> },
        // A clone of the stack being made ready: the breaker answers first, so
        // a refused call is never built. The wait (for a pool slot) ends at
        // the call's deadline, if it has one: its timer is made only when the
        // stack is not ready at once.
        Readying { stack: Stack, call: Option<Call>, deadline: Option<Pin<Box<Sleep>>> },
        Called { #[pin] future: Called },
        Done,
    }
}

/// The one way a future of this module answers a poll after its end.
fn polled_after_completion() -> ! {
    panic!("`Pending` polled after completion")
}

impl Exec {
    pub(super) fn new(client: HttpClient, call: Call, streaming: bool) -> Self {
        Exec {
            client: Tracked {
                client,
                in_flight: false,
            },
            streaming,
            limits: Limits::default(),
            limits_given: false,
            id: None,
            span: tracing::Span::none(),
            state: ExecState::Start { call: Some(call) },
        }
    }

    /// The client the call goes through.
    pub(super) fn client(&self) -> &HttpClient {
        &self.client.client
    }

    /// A call that runs under limits set before it (a streamed call sets its
    /// limits first, to bound the reading of its stream by the same deadline).
    pub(super) fn with_limits(
        client: HttpClient,
        call: Call,
        streaming: bool,
        limits: Limits,
    ) -> Self {
        Exec {
            limits,
            limits_given: true,
            ..Exec::new(client, call, streaming)
        }
    }
}

/// The client of a call, and whether the call is counted in flight: the count
/// is given back when the call ends, or when its future is dropped.
struct Tracked {
    client: HttpClient,
    in_flight: bool,
}

impl Tracked {
    fn start(&mut self) {
        self.client.inner.counters.call_started();
        self.in_flight = true;
    }

    fn end(&mut self) {
        if std::mem::take(&mut self.in_flight) {
            self.client.inner.counters.call_ended();
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.end();
    }
}

/// The call's ID and `request` span, by the crate's one rule: the caller's ID,
/// else its own `x-request-id` header, else the handled request's (whose span
/// already names it), else a fresh one.
fn identify(call: &mut Call, client: &HttpClient) -> (tracing::Span, RequestId) {
    let chosen = choose(call.request_id.take(), call.headers.get(X_REQUEST_ID));
    let path = call.path(client);
    let span = if chosen.inherited {
        inner_call_span(&call.method, &path, client.provider())
    } else {
        call_span(&call.method, &path, &chosen.id, client.provider())
    };
    (span, chosen.id)
}

/// Puts in `stack` the stack of the model `call` names, for a client that
/// keeps a breaker per model; leaves the client's for a call that names
/// none. Out of line: a client without it pays one branch.
#[inline(never)]
fn to_model_stack(
    inner: &ClientInner,
    models: &ModelStacks<Stack>,
    call: &mut Call,
    stack: &mut Stack,
) {
    let made = call.model().and_then(|model| {
        models.stack(model, |breaker| {
            CircuitBreakerService::new(inner.stack.get_ref().clone(), breaker, HttpClassifier)
        })
    });
    if let Some(made) = made {
        *stack = made;
    }
}

/// Makes `stack` ready, the breaker first: an error for a call the circuit
/// refuses or the stack cannot take, or whose deadline passes while it waits
/// (for a pool slot, or the rate limiter's gate: a gate that opens after the
/// deadline refuses the call at once); `deadline` keeps that wait's timer
/// between polls.
fn poll_admitted(
    client: &HttpClient,
    stack: &mut Stack,
    deadline: &mut Option<Pin<Box<Sleep>>>,
    limits: &Limits,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    match stack.poll_ready(cx) {
        Poll::Ready(Ok(())) if stack.is_refusing() => Poll::Ready(Err(Error::circuit_open())),
        Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(Error::from_stack(e))),
        Poll::Pending => {
            let Some(limit) = &limits.deadline else {
                return Poll::Pending;
            };
            if let Some(refused) = client.inner.limiter.refuse_past(limit.at) {
                return Poll::Ready(Err(Error::from_stack(Box::new(refused))));
            }
            let timer =
                deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(limit.at)));
            ready!(timer.as_mut().poll(cx));
            if stack.is_waiting() {
                // The circuit stayed open for as long as the call could wait.
                return Poll::Ready(Err(Error::circuit_open()));
            }
            let elapsed: BoxError = Box::new(Elapsed::deadline(limit.total));
            Poll::Ready(Err(Error::from_stack(elapsed)))
        }
    }
}

impl Future for Exec {
    type Output = Result<(http::Response<StackBody>, RequestId), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = loop {
            match this.state.as_mut().project() {
                ExecProj::Start { call } => {
                    let Some(mut call) = call.take() else {
                        polled_after_completion()
                    };
                    this.client.start();
                    let client = &this.client.client;
                    let inner = &*client.inner;
                    let (span, id) = identify(&mut call, client);
                    *this.span = span;
                    *this.id = Some(id);
                    if !*this.limits_given {
                        let _entered = this.span.enter();
                        if let Err(e) = call.set_limits(client, this.limits) {
                            break Err(e);
                        }
                    }
                    let stack = inner.stack.clone();
                    this.state.set(ExecState::Readying {
                        stack,
                        call: Some(call),
                        deadline: None,
                    });
                    // Changed where it lies, so that a client without a
                    // breaker per model builds its state as before.
                    if let Some(models) = &inner.models {
                        if let ExecProj::Readying {
                            stack,
                            call: Some(call),
                            ..
                        } = this.state.as_mut().project()
                        {
                            to_model_stack(inner, models, call, stack);
                        }
                    }
                }
                ExecProj::Readying {
                    stack,
                    call,
                    deadline,
                } => {
                    let _entered = this.span.enter();
                    let admitted =
                        poll_admitted(&this.client.client, stack, deadline, this.limits, cx);
                    if let Err(e) = ready!(admitted) {
                        break Err(e);
                    }
                    let (Some(call), Some(id)) = (call.take(), this.id.as_ref()) else {
                        polled_after_completion()
                    };
                    // A request that cannot be built drops the stack's
                    // admission unused: no outcome, a half-open slot given back.
                    let request =
                        match call.build(&this.client.client, *this.streaming, id, this.limits) {
                            Ok(request) => request,
                            Err(e) => break Err(e),
                        };
                    let future = stack.call(request);
                    this.state.set(ExecState::Called { future });
                }
                ExecProj::Called { future } => {
                    let _entered = this.span.enter();
                    match ready!(future.poll(cx)) {
                        Ok(response) => break Ok(response),
                        Err(e) => break Err(Error::from_stack(e)),
                    }
                }
                ExecProj::Done => polled_after_completion(),
            }
        };
        this.state.set(ExecState::Done);
        this.client.end();
        let Some(id) = this.id.take() else {
            polled_after_completion()
        };
        Poll::Ready(match result {
            Ok(response) => Ok((response, id)),
            Err(e) => {
                Err(explain(e, this.limits, &this.client.client.inner.config).with_request_id(id))
            }
        })
    }
}
