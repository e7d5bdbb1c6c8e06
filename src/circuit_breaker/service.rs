//! The service a [`CircuitBreakerLayer`](super::CircuitBreakerLayer) makes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::time::Instant;

use tower_service::Service;

use super::breaker::CircuitBreaker;
use super::future::ResponseFuture;
use super::permit::{Handle, Permit};
use crate::classify::{ClassifyOutcome, ErrorsAreFailures};
use crate::error::BoxError;
use crate::sync::Arc;

/// A service guarded by a [`CircuitBreaker`]; made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// `poll_ready` asks the breaker first. If the circuit refuses the call, it
/// answers ready *without polling the inner service*, and `call` then fails at
/// once with [`CircuitOpen`](super::CircuitOpen) — no connection is opened, no
/// pool slot is taken. If the circuit admits the call, the admission (which may be
/// a half-open test slot) is held until `call` hands it to the response future,
/// which records one outcome when the inner future completes.
///
/// # Clone
///
/// A clone shares the breaker but starts without an admission, as tower's
/// concurrency limit does with its permit.
///
/// # Errors
///
/// Errors of the inner service are converted into [`BoxError`]; the breaker adds
/// [`CircuitOpen`](super::CircuitOpen).
pub struct CircuitBreakerService<S, C = ErrorsAreFailures> {
    inner: S,
    // This service's own handle; see `Permit`.
    breaker: Arc<Handle>,
    classifier: C,
    admission: Admission,
    waiting: Option<Box<Wait>>,
}

enum Admission {
    Unchecked,
    Admitted(Permit),
    /// Refused by the circuit; the call may yet wait for it.
    Rejected,
    /// Refused for good: `call` answers with the refusal.
    Refused,
}

/// A wait for an open circuit to admit a call (the breaker's
/// [`wait_while_open`](super::CircuitBreakerBuilder::wait_while_open)),
/// until a moment; kept beside the admission, so that a breaker that never
/// waits pays nothing for it on its closed path.
struct Wait {
    until: Instant,
    admissible: Pin<Box<dyn Future<Output = bool> + Send + Sync>>,
}

impl Wait {
    /// The wait a refused call makes, if the breaker lets it wait and no
    /// other provider can take the call.
    #[cold]
    #[inline(never)]
    fn after_refusal(breaker: &Arc<Handle>) -> Option<Box<Wait>> {
        let patience = breaker.0.patience()?;
        // Another provider can take the call: better to move on than wait.
        if crate::scope::elsewhere() {
            return None;
        }
        Some(Wait::until(breaker, Instant::now() + patience, false))
    }

    /// A wait until `until`; with `after_change`, for the state to change
    /// first (every half-open slot was taken).
    fn until(breaker: &Arc<Handle>, until: Instant, after_change: bool) -> Box<Wait> {
        let breaker = breaker.0.clone();
        Box::new(Wait {
            until,
            admissible: Box::pin(async move { breaker.wait_admissible(until, after_change).await }),
        })
    }
}

/// Readiness while a call waits for the circuit: Pending until it is
/// admitted (`admission` then holds its permit) or its wait is over (the
/// call is then refused).
#[cold]
#[inline(never)]
fn poll_wait(
    waiting: &mut Option<Box<Wait>>,
    admission: &mut Admission,
    breaker: &Arc<Handle>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    while let Some(wait) = waiting {
        let until = wait.until;
        if ready!(wait.admissible.as_mut().poll(cx)) {
            match Permit::acquire(breaker) {
                Some(permit) => *admission = Admission::Admitted(permit),
                // Half-open with every probe slot taken: wait for the
                // probes' verdict.
                None if Instant::now() < until => {
                    *wait = Wait::until(breaker, until, true);
                    continue;
                }
                None => {}
            }
        }
        *waiting = None;
    }
    Poll::Ready(())
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` with `breaker` and `classifier`.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService {
            inner,
            breaker: Arc::new(Handle(breaker)),
            classifier,
            admission: Admission::Unchecked,
            waiting: None,
        }
    }

    /// Whether `poll_ready` found the circuit refusing: the next `call` fails
    /// at once with [`CircuitOpen`](super::CircuitOpen) whatever it is given.
    /// A caller that builds its request only once the service is ready can
    /// skip building one that would be refused, as
    /// [`HttpClient`](crate::HttpClient) does.
    pub fn is_refusing(&self) -> bool {
        matches!(self.admission, Admission::Refused)
    }

    /// Whether `poll_ready` is waiting for the open circuit to close (see
    /// [`wait_while_open`](super::CircuitBreakerBuilder::wait_while_open)).
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker.0
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

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: ClassifyOutcome<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Admission::Unchecked = self.admission {
            self.admission = match Permit::acquire(&self.breaker) {
                Some(permit) => Admission::Admitted(permit),
                None => Admission::Rejected,
            };
        }
        let Admission::Admitted(permit) = &mut self.admission else {
            return self.poll_refused::<Req>(cx);
        };
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                // A slow-call clock runs from here: waiting for the inner
                // service (a local limit, say) is not the remote's time.
                permit.ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                // Gives back a half-open slot: an inner service that cannot
                // take calls says nothing about the remote service's health.
                self.admission = Admission::Unchecked;
                Poll::Ready(Err(e.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = std::mem::replace(&mut self.admission, Admission::Unchecked);
        let permit = match admission {
            // A slow-call clock runs from the call, not from `poll_ready`.
            Admission::Admitted(permit) => permit,
            Admission::Rejected | Admission::Refused => {
                return ResponseFuture::rejected(self.classifier.clone());
            }
            // `call` without `poll_ready` breaks the Service contract; still
            // honour the circuit rather than panic.
            Admission::Unchecked => match Permit::acquire(&self.breaker) {
                Some(permit) => permit,
                None => return ResponseFuture::rejected(self.classifier.clone()),
            },
        };
        ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Readiness of a call the circuit refused: Ready (`call` answers with
    /// the refusal), unless the breaker lets it wait for the circuit and no
    /// other provider can take it; then Pending until it is admitted or its
    /// wait is over.
    #[cold]
    #[inline(never)]
    fn poll_refused<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>
    where
        Self: Service<Req, Error = BoxError>,
    {
        if let Admission::Rejected = self.admission {
            if self.waiting.is_none() {
                self.waiting = Wait::after_refusal(&self.breaker);
            }
            if self.waiting.is_some() {
                ready!(poll_wait(
                    &mut self.waiting,
                    &mut self.admission,
                    &self.breaker,
                    cx
                ));
                if let Admission::Admitted(_) = self.admission {
                    return self.poll_ready(cx);
                }
            }
            self.admission = Admission::Refused;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        CircuitBreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            admission: Admission::Unchecked,
            waiting: None,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.0)
            .field("classifier", &self.classifier)
            .finish()
    }
}
