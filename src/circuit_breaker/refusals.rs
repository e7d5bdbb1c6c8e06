//! The refusal log: the first refused call of each period, then at most one
//! line a second, so an open circuit under load does not flood the logs.

use super::state::STATE_MASK;
use crate::sync::{AtomicU64, Ordering};

/// Nanoseconds between two refusal lines of one period.
const INTERVAL: u64 = 1_000_000_000;

/// Counters the refusals are spread over, so that threads refusing calls at
/// once do not fight over one cache line (the refusal path was read-only before
/// it counted).
const STRIPES: usize = 8;

/// One counter, alone on its cache lines (see `permit::Handle`).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// This thread's stripe: threads take stripes in turn as they first refuse.
fn stripe() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.try_with(|i| *i).unwrap_or(0)
}

/// Counts refused calls and decides which of them are logged.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    /// Refused since the last line, spread over stripes.
    count: [Stripe; STRIPES],
    /// When the last line was written (nanoseconds after the breaker's epoch).
    last_line: AtomicU64,
    /// The state word's generation of the last line, plus one (0: none yet).
    period: AtomicU64,
}

impl Refusals {
    /// Counts a refusal at `now` while the state word is `word`, and logs it at
    /// `WARN` if it is the first of its period or a second has passed since the
    /// last line.
    pub(super) fn refused(&self, word: u64, now: u64) {
        self.count[stripe()].0.fetch_add(1, Ordering::Relaxed);
        let period = (word & !STATE_MASK) + 1;
        let last = self.last_line.load(Ordering::Relaxed);
        let first = self.period.load(Ordering::Relaxed) != period;
        if !first && now.saturating_sub(last) < INTERVAL {
            return;
        }
        // One caller writes the line; the others keep counting.
        if self
            .last_line
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.period.store(period, Ordering::Relaxed);
        let refused: u64 = self
            .count
            .iter()
            .map(|stripe| stripe.0.swap(0, Ordering::AcqRel))
            .sum();
        if first {
            tracing::warn!(refused, "Circuit breaker OPEN - rejecting request");
        } else {
            tracing::warn!(
                refused,
                "Circuit breaker OPEN - rejecting request ({refused} refused since the last report)"
            );
        }
    }
}
