//! An admitted call's claim on the breaker, and a service's handle to it.

use std::fmt;

use super::breaker::{CircuitBreaker, Ticket, Verdict};
use crate::scope::{AttemptScope, AttemptSink, Call, PROBE, ProbeScope, WaitClosed};
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
    /// Whether a retry layer below reports this call's failed attempts.
    counts_attempts: bool,
}

/// What the layers below a call are told while it is polled (see
/// [`scope`](crate::scope)): that it is a probe, or where its failed attempts
/// go. Dropped, it tells them no more.
pub(crate) enum CallScope {
    Probe(#[allow(dead_code)] ProbeScope),
    #[cfg_attr(loom, allow(dead_code))]
    Attempts(#[allow(dead_code)] AttemptScope),
}

impl Permit {
    #[inline]
    pub(crate) fn acquire(breaker: &Arc<Handle>) -> Option<Permit> {
        breaker.0.admit().map(|ticket| Permit {
            counts_attempts: !ticket.half_open() && breaker.0.counts_attempts(),
            breaker: breaker.clone(),
            ticket,
            settled: false,
        })
    }

    /// What the layers below are told while the call is polled, if anything:
    /// that it is a probe (one attempt), or, when the breaker counts attempts,
    /// where its failed attempts go. Nothing for a plain call: one bit and
    /// one flag looked at.
    #[inline]
    pub(crate) fn scope(&self) -> Option<CallScope> {
        if self.ticket.half_open() {
            return probe_scope(self);
        }
        if self.counts_attempts {
            let call = (self.ticket.generation(), self.ticket.start());
            return attempt_scope(&self.breaker, call).map(CallScope::Attempts);
        }
        None
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
        self.0.attempt_failed(generation & !PROBE, start)
    }

    fn wait_closed(
        &self,
        delay: std::time::Duration,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<WaitClosed> {
        let patience = self.0.patience()?;
        let now = tokio::time::Instant::now();
        let until = deadline.map_or(now + patience, |d| d.min(now + patience));
        let breaker = self.0.clone();
        Some(Box::pin(async move {
            tokio::time::sleep(delay).await;
            breaker.wait_closed(until).await
        }))
    }
}

/// The scope that sends `call`'s failed attempts to `breaker`.
#[cfg(not(loom))]
fn attempt_scope(breaker: &Arc<Handle>, call: Call) -> Option<AttemptScope> {
    let sink: Arc<dyn AttemptSink> = breaker.clone();
    Some(AttemptScope::enter(sink, call))
}

/// Under the model checker the breaker's `Arc` is loom's, which cannot be a
/// trait object: attempts are not counted there (the models check calls).
#[cfg(loom)]
fn attempt_scope(_breaker: &Arc<Handle>, _call: Call) -> Option<AttemptScope> {
    None
}

/// A probe's scope; with the breaker's own handle when callers may wait.
#[cold]
#[inline(never)]
fn probe_scope(permit: &Permit) -> Option<CallScope> {
    let call = (permit.ticket.generation(), permit.ticket.start());
    // A probe under a breaker that lets callers wait for the circuit to
    // close: with the breaker's handle too, so that its caller can wait.
    if permit.breaker.0.patience().is_some() {
        if let Some(scope) = attempt_scope(&permit.breaker, (call.0 | PROBE, call.1)) {
            return Some(CallScope::Attempts(scope));
        }
    }
    Some(CallScope::Probe(ProbeScope::enter()))
}
