//! Whether the call being polled is a half-open probe: the breaker says so
//! while it polls a probe's future, and the layers below it (the retry and
//! hedge layers) ask, so that a probe is one attempt.
//!
//! A scope on the thread rather than a mark on the request: the breaker
//! wraps any request type, and the layers under it run inside its poll.

use std::cell::Cell;

thread_local! {
    static PROBING: Cell<u32> = const { Cell::new(0) };
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
}

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
