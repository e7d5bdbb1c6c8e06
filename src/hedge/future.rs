//! The response future of [`HedgeService`](super::HedgeService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::shared::Shared;
use crate::error::BoxError;
use crate::retry::ReplayRequest;

pin_project! {
    /// The future returned by [`HedgeService`](super::HedgeService): the call,
    /// and after the delay with no answer, its copy; the first good answer
    /// wins.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        first: S::Future,
        // The call's own error, once it failed while its copy still runs.
        first_failed: Option<BoxError>,
        // Boxed: a call that is not hedged (the common case) carries none of
        // its weight.
        copy: Option<Pin<Box<Second<S, Req>>>>,
    }
}

pin_project! {
    #[project = SecondProj]
    enum Second<S, Req>
    where
        S: Service<Req>,
    {
        // No copy, but the call is timed for the percentile.
        Timed { started: Instant, shared: Arc<Shared> },
        // Waiting for the delay to pass with no answer.
        Waiting {
            #[pin]
            sleep: Sleep,
            started: Instant,
            shared: Arc<Shared>,
            service: Option<S>,
            request: Option<Req>,
        },
        // The copy is due; its service is being made ready.
        Readying { started: Instant, shared: Arc<Shared>, service: S, request: Option<Req> },
        Sent { #[pin] future: S::Future, started: Instant, shared: Arc<Shared> },
        // The copy failed, could not be sent, or has answered.
        Over { started: Instant, shared: Arc<Shared> },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(super) fn untouched(first: S::Future) -> Self {
        ResponseFuture {
            first,
            first_failed: None,
            copy: None,
        }
    }

    pub(super) fn measured(first: S::Future, shared: Arc<Shared>) -> Self {
        ResponseFuture {
            first,
            first_failed: None,
            copy: Some(Box::pin(Second::Timed {
                started: Instant::now(),
                shared,
            })),
        }
    }

    pub(super) fn hedged(
        first: S::Future,
        shared: Arc<Shared>,
        delay: Duration,
        service: S,
        request: Req,
    ) -> Self {
        let started = Instant::now();
        ResponseFuture {
            first,
            first_failed: None,
            copy: Some(Box::pin(Second::Waiting {
                sleep: tokio::time::sleep_until(started + delay),
                started,
                shared,
                service: Some(service),
                request: Some(request),
            })),
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: ReplayRequest,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The call itself, until it has failed.
        if this.first_failed.is_none() {
            if let Poll::Ready(result) = this.first.poll(cx) {
                let running = this.copy.as_ref().is_some_and(|c| c.is_running());
                match result.map_err(Into::into) {
                    Ok(response) => {
                        if let Some(copy) = this.copy.as_ref() {
                            copy.answered();
                        }
                        return Poll::Ready(Ok(response));
                    }
                    // The copy runs, or is about to: wait for it.
                    Err(e) if running => *this.first_failed = Some(e),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        let Some(copy) = this.copy.as_mut() else {
            return Poll::Pending;
        };
        match ready!(copy.as_mut().poll_copy(cx)) {
            Some(Ok(response)) => Poll::Ready(Ok(response)),
            // No copy will answer: the call's own result is the answer
            // (its error, when both failed).
            Some(Err(_)) | None => match this.first_failed.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl<S: Service<Req>, Req: ReplayRequest> Second<S, Req>
where
    S::Error: Into<BoxError>,
{
    /// Moves the copy on: its answer once it has one, `None` once no copy
    /// will come (it was not sent, or failed before it was).
    fn poll_copy(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<S::Response, BoxError>>> {
        loop {
            let next = match self.as_mut().project() {
                SecondProj::Timed { .. } | SecondProj::Over { .. } => return Poll::Ready(None),
                SecondProj::Waiting {
                    sleep,
                    started,
                    shared,
                    service,
                    request,
                } => {
                    ready!(sleep.poll(cx));
                    // The copy is made now, from the request kept back; none
                    // for a circuit breaker's probe, which is one attempt.
                    let copy = request
                        .as_ref()
                        .filter(|_| !crate::scope::is_probe())
                        .and_then(ReplayRequest::try_clone);
                    match (copy.is_some() && shared.may_send(), service.take(), copy) {
                        (true, Some(service), request @ Some(_)) => {
                            tracing::debug!("no answer yet: sending a hedged copy");
                            Second::Readying {
                                started: *started,
                                shared: shared.clone(),
                                service,
                                request,
                            }
                        }
                        _ => Second::Timed {
                            started: *started,
                            shared: shared.clone(),
                        },
                    }
                }
                SecondProj::Readying {
                    started,
                    shared,
                    service,
                    request,
                } => match (ready!(service.poll_ready(cx)), request.take()) {
                    (Ok(()), Some(request)) => Second::Sent {
                        future: service.call(request),
                        started: *started,
                        shared: shared.clone(),
                    },
                    _ => Second::Over {
                        started: *started,
                        shared: shared.clone(),
                    },
                },
                SecondProj::Sent {
                    future,
                    started,
                    shared,
                } => {
                    let answer = ready!(future.poll(cx)).map_err(Into::into);
                    if answer.is_ok() {
                        shared.won();
                        shared.record(started.elapsed());
                    }
                    let over = Second::Over {
                        started: *started,
                        shared: shared.clone(),
                    };
                    self.set(over);
                    return Poll::Ready(Some(answer));
                }
            };
            self.set(next);
        }
    }
}

impl<S: Service<Req>, Req> Second<S, Req> {
    /// Whether a copy has been sent, or is being sent.
    fn is_running(&self) -> bool {
        matches!(self, Second::Readying { .. } | Second::Sent { .. })
    }

    /// Records the call's own good answer: its latency, for a percentile.
    fn answered(&self) {
        let (Second::Timed { started, shared }
        | Second::Waiting {
            started, shared, ..
        }
        | Second::Readying {
            started, shared, ..
        }
        | Second::Sent {
            started, shared, ..
        }
        | Second::Over { started, shared }) = self;
        shared.record(started.elapsed());
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
