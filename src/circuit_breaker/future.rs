//! The response future of [`CircuitBreakerService`](super::CircuitBreakerService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::breaker::Verdict;
use super::permit::Permit;
use crate::classify::{ClassifyOutcome, Outcome, Settle};
use crate::error::{BoxError, CircuitOpen};

/// What an outcome means to the breaker.
const fn verdict(outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Success | Outcome::ClientError => Verdict::Success,
        Outcome::Failure { .. } | Outcome::Fatal => Verdict::Failure,
        // A 429 says the service is alive but not that it has recovered: it
        // neither resets the failure count nor closes a half-open circuit, and a
        // test slot it held is given back.
        Outcome::Throttled { .. } | Outcome::Ignored | Outcome::Deferred => Verdict::Ignore,
    }
}

pin_project! {
    /// The future returned by
    /// [`CircuitBreakerService::call`](super::CircuitBreakerService).
    ///
    /// # Cancellation
    ///
    /// Dropping it before it completes records nothing and gives back the
    /// half-open test slot it may hold.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Option<Permit>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn called(future: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
            permit: Some(permit),
            classifier,
        }
    }

    pub(super) fn rejected(classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Rejected,
            permit: None,
            classifier,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: ClassifyOutcome<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Rejected => Poll::Ready(Err(Box::new(CircuitOpen::new()))),
            KindProj::Called { future } => {
                // The layers below ask whether this is a probe (one attempt),
                // and where its failed attempts go.
                let scope = this.permit.as_ref().and_then(Permit::scope);
                let polled = future.poll(cx);
                drop(scope);
                let mut result = ready!(polled);
                if let Some(permit) = this.permit.take() {
                    match this.classifier.classify(result.as_ref()) {
                        Outcome::Deferred => {
                            if let Ok(response) = result.as_mut() {
                                // The body settles the call at its end, or
                                // gives the slot back when dropped before it.
                                let settle =
                                    Settle::new(move |outcome| permit.settle(verdict(outcome)));
                                drop(this.classifier.defer(response, settle));
                            }
                        }
                        outcome => permit.settle(verdict(outcome)),
                    }
                }
                Poll::Ready(result.map_err(Into::into))
            }
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejected = matches!(self.kind, Kind::Rejected);
        f.debug_struct("ResponseFuture")
            .field("rejected", &rejected)
            .finish()
    }
}
