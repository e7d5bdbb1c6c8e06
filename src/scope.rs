//! What the layers above a call tell the layers below it while they poll it:
//! whether it is a circuit breaker's half-open probe (the breaker says so
//! while it polls a probe's future), and whether another provider could take
//! it (a [`ProviderGroup`](crate::failover::ProviderGroup) says so while it
//! polls a member that has a next one). The retry and hedge layers ask.
//!
//! A scope on the thread rather than a mark on the request: the breaker
//! wraps any request type, and the layers under it run inside its poll.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use pin_project_lite::pin_project;

thread_local! {
    static PROBING: Cell<u32> = const { Cell::new(0) };
    static ELSEWHERE: Cell<u32> = const { Cell::new(0) };
    static ATTEMPTS: RefCell<Option<(Arc<dyn AttemptSink>, Call)>> = const { RefCell::new(None) };
}

/// Whether the future being polled runs inside a half-open probe of a
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) above it.
///
/// The crate's [`RetryLayer`](crate::RetryLayer) sends a probe once, with no
/// retry, and its [`HedgeLayer`](crate::hedge::HedgeLayer) sends no copy of
/// it: a probe asks whether the provider has recovered, and a caller whose
/// probe failed moves on at once. A layer of your own below a breaker can
/// ask the same. It answers for work polled inside the breaker's future, on
/// the same task: not for a task spawned from it, nor for a service behind a
/// `tower::buffer::Buffer` below the breaker.
pub fn is_probe() -> bool {
    PROBING.try_with(|p| p.get() > 0).unwrap_or(false)
        || ATTEMPTS
            .try_with(|a| {
                a.borrow()
                    .as_ref()
                    .is_some_and(|(_, call)| call.0 & PROBE != 0)
            })
            .unwrap_or(false)
}

/// The bit of a [`Call`]'s period that marks a half-open probe whose
/// breaker lets its caller wait (periods are multiples of 4).
pub(crate) const PROBE: u64 = 1;

/// Marks the thread as polling a probe until dropped.
pub(crate) struct ProbeScope(());

impl ProbeScope {
    pub(crate) fn enter() -> ProbeScope {
        let _ = PROBING.try_with(|p| p.set(p.get().saturating_add(1)));
        ProbeScope(())
    }
}

impl Drop for ProbeScope {
    fn drop(&mut self) {
        let _ = PROBING.try_with(|p| p.set(p.get().saturating_sub(1)));
    }
}

/// Whether another provider of a group could take the call being polled: its
/// retries on this provider then stop where moving on is faster (see
/// [`ProviderGroup`](crate::failover::ProviderGroup)).
pub(crate) fn elsewhere() -> bool {
    ELSEWHERE.try_with(|p| p.get() > 0).unwrap_or(false)
}

pin_project! {
    /// A future polled with [`elsewhere`] true (when `elsewhere` is set).
    pub(crate) struct Elsewhere<F> {
        #[pin]
        future: F,
        elsewhere: bool,
    }
}

impl<F> Elsewhere<F> {
    pub(crate) fn new(future: F, elsewhere: bool) -> Self {
        Elsewhere { future, elsewhere }
    }
}

impl<F: Future> Future for Elsewhere<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.elsewhere {
            return this.future.poll(cx);
        }
        let _scope = ElsewhereScope::enter();
        this.future.poll(cx)
    }
}

/// Marks the thread as polling a call another provider could take, until
/// dropped (so a panic in the poll leaves nothing behind).
struct ElsewhereScope(());

impl ElsewhereScope {
    fn enter() -> ElsewhereScope {
        let _ = ELSEWHERE.try_with(|p| p.set(p.get().saturating_add(1)));
        ElsewhereScope(())
    }
}

impl Drop for ElsewhereScope {
    fn drop(&mut self) {
        let _ = ELSEWHERE.try_with(|p| p.set(p.get().saturating_sub(1)));
    }
}

/// The call a failed attempt belongs to, as its breaker knows it: the period
/// it was admitted in, and when.
pub(crate) type Call = (u64, u64);

/// Where a breaker that counts attempts hears of a failed attempt its call
/// will retry.
pub(crate) trait AttemptSink: Send + Sync {
    /// Counts a failed attempt of `call`; `false` once the circuit has opened
    /// (the call should stop retrying).
    fn failed_attempt(&self, call: Call) -> bool;

    /// For a call whose attempts met the circuit opening: a wait of `delay`
    /// and then for the circuit to close, no later than `deadline`, if the
    /// breaker lets calls wait (`true` when it closed in time); `None` if not.
    fn wait_closed(&self, delay: Duration, deadline: Option<Instant>) -> Option<WaitClosed>;
}

/// A wait for a circuit to close: `true` when it did in time.
pub(crate) type WaitClosed = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Makes `sink` the one [`attempt_failed`] reports `call`'s attempts to,
/// until dropped.
pub(crate) struct AttemptScope(Option<(Arc<dyn AttemptSink>, Call)>);

impl AttemptScope {
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn enter(sink: Arc<dyn AttemptSink>, call: Call) -> AttemptScope {
        AttemptScope(
            ATTEMPTS
                .try_with(|a| a.replace(Some((sink, call))))
                .ok()
                .flatten(),
        )
    }
}

impl Drop for AttemptScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        let _ = ATTEMPTS.try_with(|a| *a.borrow_mut() = previous);
    }
}

/// Reports a failed attempt that its call is about to retry to the breaker
/// above that counts attempts, if there is one: whether the call may go on.
pub(crate) fn attempt_failed() -> bool {
    let sink = ATTEMPTS.try_with(|a| a.borrow().clone()).ok().flatten();
    sink.is_none_or(|(sink, call)| sink.failed_attempt(call))
}

/// For a call whose failed attempt [`attempt_failed`] found the circuit open:
/// the wait its breaker lets it make for the circuit to close before its
/// next attempt (after `delay`, its backoff), if any. None when another
/// provider could take the call.
pub(crate) fn wait_closed(delay: Duration, deadline: Option<Instant>) -> Option<WaitClosed> {
    if elsewhere() {
        return None;
    }
    let sink = ATTEMPTS.try_with(|a| a.borrow().clone()).ok().flatten()?;
    sink.0.wait_closed(delay, deadline)
}
