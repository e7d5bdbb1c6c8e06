//! Cold start: a limiter that knows nothing of a provider's limit lets a few
//! attempts out at once at first, and more as answers succeed.
//!
//! The window is TCP's congestion window, counted in attempts in flight:
//! it starts at [`ColdStart::initial`], grows by one with each successful
//! answer (so it doubles every round trip: slow start) until the provider
//! first throttles, then halves and grows by one per window's worth of
//! successes (additive increase), halving again on each throttled answer,
//! never below one nor above [`ColdStart::max`]. A burst of N callers against
//! an unknown limit then costs close to N attempts: the first 429 arrives
//! while a handful are in flight, and from then on the gate and the learned
//! pace space the rest. Why a window of attempts in flight rather than a
//! rate: before the first answer nothing is known of the provider's rate,
//! and the answers are what open it up (as Netflix's concurrency-limits and
//! TCP do), with no clock read per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::ConfigError;

/// How many attempts a limiter lets out at once while it learns a provider's
/// limit; see [`RateLimiter::with_cold_start`](super::RateLimiter::with_cold_start)
/// and the [module documentation](super#cold-start).
///
/// In a settings file: `cold_start = { initial = 2, max = 64 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ColdStart {
    /// Attempts in flight at first (at least 1).
    pub initial: u32,
    /// The most the window grows to (at least `initial`): past it, the
    /// window no longer holds anything back.
    pub max: u32,
}

impl ColdStart {
    /// Two attempts at first, up to 64: what the `openai` and `anthropic`
    /// presets use.
    pub const fn new(initial: u32, max: u32) -> Self {
        ColdStart { initial, max }
    }

    /// Checks that `initial` is at least 1 and `max` at least `initial`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `cold_start` and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.initial == 0 || self.max < self.initial || self.max > 1_000_000 {
            return Err(ConfigError::new(
                "cold_start",
                format!(
                    "needs 1 <= initial <= max <= 1000000, got initial {} and max {}",
                    self.initial, self.max
                ),
            ));
        }
        Ok(())
    }
}

/// The window, shared by every clone of one limiter.
pub(super) struct Window {
    /// The window, in thousandths of an attempt.
    size: AtomicU64,
    /// Once the provider has throttled, growth is one per window (`1`).
    avoiding: AtomicU32,
    in_flight: AtomicU32,
    max: u32,
    /// Woken when a place frees, or the window grows.
    freed: Arc<tokio::sync::Notify>,
}

const ONE: u64 = 1000;

impl Window {
    pub(super) fn new(cold: ColdStart) -> Window {
        Window {
            size: AtomicU64::new(u64::from(cold.initial.max(1)) * ONE),
            avoiding: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            max: cold.max.max(1),
            freed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Attempts the window lets out at once now.
    pub(super) fn size(&self) -> u32 {
        u32::try_from(self.size.load(Ordering::Relaxed) / ONE)
            .unwrap_or(u32::MAX)
            .clamp(1, self.max)
    }

    /// Takes a place if one is free.
    fn try_take(&self) -> bool {
        let size = self.size();
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < size).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a place back.
    pub(super) fn give_back(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.freed.notify_one();
    }

    /// A wait for a place to free (or the window to grow).
    pub(super) fn freed(&self) -> tokio::sync::futures::OwnedNotified {
        self.freed.clone().notified_owned()
    }

    /// Learns from an answer to an attempt that held a place: a success
    /// opens the window, a throttled answer halves it.
    pub(super) fn learn(&self, throttled: bool) {
        let max = u64::from(self.max) * ONE;
        if throttled {
            self.avoiding.store(1, Ordering::Relaxed);
            let _ = self
                .size
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                    Some((s / 2).max(ONE))
                });
            return;
        }
        let avoiding = self.avoiding.load(Ordering::Relaxed) == 1;
        let before = self.size();
        let _ = self
            .size
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let step = if avoiding {
                    ONE * ONE / s.max(ONE)
                } else {
                    ONE
                };
                Some((s + step).min(max))
            });
        if self.size() > before {
            // A new place: one more waiter may go.
            self.freed.notify_one();
        }
    }

    /// The window as the stats show it.
    pub(super) fn snapshot(&self) -> (u32, u32) {
        (self.size(), self.in_flight.load(Ordering::Relaxed))
    }
}

/// A place in the window, held by an attempt until its answer (or its end);
/// given back when dropped.
pub(crate) struct Place {
    window: Arc<Window>,
}

impl Place {
    /// Takes a place in `window` if one is free.
    pub(super) fn take(window: &Arc<Window>) -> Option<Place> {
        window.try_take().then(|| Place {
            window: window.clone(),
        })
    }

    /// Learns from the attempt's answer; the place is given back on drop.
    pub(crate) fn answered(&self, status: http::StatusCode) {
        let throttled = status == http::StatusCode::TOO_MANY_REQUESTS;
        self.window.learn(throttled);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.window.give_back();
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place").finish_non_exhaustive()
    }
}
