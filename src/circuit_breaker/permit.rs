//! An admitted call's claim on the breaker, and a service's handle to it.

use std::fmt;

use super::breaker::{CircuitBreaker, Ticket, Verdict};
use crate::scope::{AttemptScope, AttemptSink, Call};
use crate::sync::Arc;

/// An admitted call's claim on the breaker. Dropping it unsettled gives back a
/// half-open slot and records nothing.
///
/// It holds the service's own handle (`Arc<CircuitBreaker>`), not the breaker's
/// shared state directly: services built by separate `layer` calls (one per
/// worker, say) then bump separate reference counts, and a breaker shared by
/// many threads costs no cache-line traffic on its closed path.
pub(crate) struct Permit {
    breaker: Arc<Handle>,
    pub(super) ticket: Ticket,
    settled: bool,
}

impl Permit {
    #[inline]
    pub(crate) fn acquire(breaker: &Arc<Handle>) -> Option<Permit> {
        breaker.0.admit().map(|ticket| Permit {
            breaker: breaker.clone(),
            ticket,
            settled: false,
        })
    }

    /// Makes this call the one a retry layer below reports its failed
    /// attempts to while it is polled, if the breaker counts attempts (never
    /// for a probe, which is one attempt).
    #[inline]
    pub(crate) fn attempt_scope(&self) -> Option<AttemptScope> {
        let ticket = self.ticket;
        (self.breaker.0.counts_attempts() && !ticket.half_open()).then(|| {
            let sink: Arc<Handle> = self.breaker.clone();
            AttemptScope::enter(sink, (ticket.generation(), ticket.start()))
        })
    }

    /// Whether the call holds a half-open test slot: a probe.
    #[inline]
    pub(crate) fn is_probe(&self) -> bool {
        self.ticket.half_open()
    }

    /// Starts a timed call's clock again: the service is ready for it.
    #[inline]
    pub(crate) fn ready(&mut self) {
        if self.ticket.timed() {
            self.ticket = self.ticket.started_at(self.breaker.0.clock());
        }
    }

    #[inline]
    pub(crate) fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.breaker.0.settle(self.ticket, verdict);
    }
}

/// One service's handle to a breaker, alone on its cache lines (128 bytes, as
/// crossbeam pads for x86's adjacent-line prefetch): the reference counts of two
/// services' handles must not share a line, or two threads' closed paths would
/// contend on it after all.
#[repr(align(128))]
pub(crate) struct Handle(pub(crate) CircuitBreaker);

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.0.release(self.ticket);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("half_open", &self.ticket.half_open())
            .finish()
    }
}

/// One admitted call's right to report its outcome, from
/// [`CircuitBreaker::try_acquire`].
///
/// Record the outcome with [`success`](Self::success) or
/// [`failure`](Self::failure). Dropping the permit without either records
/// nothing and gives a half-open test slot back, so a caller that panics or is
/// cancelled cannot strand the breaker. An outcome from before the circuit
/// changed state is ignored.
#[must_use = "a permit records nothing unless `success()` or `failure()` is called"]
pub struct CallPermit {
    breaker: CircuitBreaker,
    ticket: Ticket,
    settled: bool,
}

impl CallPermit {
    pub(super) fn new(breaker: CircuitBreaker, ticket: Ticket) -> Self {
        CallPermit {
            breaker,
            ticket,
            settled: false,
        }
    }

    /// Records that the call succeeded.
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(self.ticket, Verdict::Success);
    }

    /// Records that the call failed.
    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.settle(self.ticket, Verdict::Failure);
    }

    /// Whether the permit holds one of the half-open test slots.
    pub fn is_half_open(&self) -> bool {
        self.ticket.half_open()
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.release(self.ticket);
        }
    }
}

impl fmt::Debug for CallPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("half_open", &self.ticket.half_open())
            .finish()
    }
}

impl AttemptSink for Handle {
    fn failed_attempt(&self, (generation, start): Call) -> bool {
        self.0.attempt_failed(generation, start)
    }
}
