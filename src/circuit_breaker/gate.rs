//! The breaker's admission and outcome, for a caller that drives its own
//! service (as [`HttpClient`](crate::client::HttpClient) does) rather than
//! stacking [`CircuitBreakerLayer`](super::CircuitBreakerLayer).

use super::breaker::CircuitBreaker;
use super::future::ResponseFuture;
use super::permit::{Handle, Permit};
use crate::sync::Arc;

/// A handle to a breaker that admits calls and guards their futures, with the
/// same rules as [`CircuitBreakerService`](super::CircuitBreakerService). One
/// `HttpClient` and its clones share one gate, as the clones of one service share
/// its handle.
pub(crate) struct Gate {
    handle: Arc<Handle>,
}

impl Gate {
    pub(crate) fn new(breaker: CircuitBreaker) -> Self {
        Gate {
            handle: Arc::new(Handle(breaker)),
        }
    }

    /// Admits a call, or refuses it (`None`: the circuit is open, or every
    /// half-open test slot is taken). Dropping the permit unused records nothing
    /// and gives back a half-open slot.
    pub(crate) fn admit(&self) -> Option<Permit> {
        Permit::acquire(&self.handle)
    }

    /// Guards `future`, the admitted call: when it completes, `classifier` turns
    /// its result into the breaker's one outcome for the call.
    pub(crate) fn guard<F, C>(future: F, permit: Permit, classifier: C) -> ResponseFuture<F, C> {
        ResponseFuture::called(future, permit, classifier)
    }
}
