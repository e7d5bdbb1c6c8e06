//! The default retry budget: lock-free, and free on the success path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use tokio::time::Instant;
use tower::retry::budget::Budget;

/// Thousandths of a retry, so that 20% of a call is a whole number.
const RETRY: i64 = 1000;

/// Retries may add `ratio` on top of first attempts, plus `floor_per_sec`
/// retries a second, with at most `max_retries_banked` saved up for a burst.
///
/// Each call [`deposit`](Budget::deposit)s `ratio` of a retry (a load, and an
/// add only while the balance is below its cap: a busy, healthy client writes
/// nothing shared). Each retry [`withdraw`](Budget::withdraw)s one, after adding
/// the floor earned since the last withdrawal — the only place the clock is read.
/// tower's `TpsBudget` gives the same guarantee over a sliding window, at the
/// cost of a mutex and a clock read on every call.
///
/// ```
/// use stache_resilience::retry::RetryBudget;
/// use tower::retry::budget::Budget;
///
/// let budget = RetryBudget::new(0.2, 0, 100);
/// while budget.withdraw() {} // spend the 100 a new budget starts with
/// for _ in 0..10 {
///     budget.deposit(); // ten calls earn two retries
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry available now.
    balance: AtomicI64,
    per_deposit: i64,
    floor_per_sec: i64,
    max_balance: i64,
    epoch: Instant,
    /// Nanoseconds after `epoch` up to which the floor has been paid in.
    refilled_to: AtomicU64,
}

impl RetryBudget {
    /// A budget of `ratio` retries per call (0.2 is 20%; clamped to 0..=1000),
    /// plus `floor_per_sec` retries a second, banking at most
    /// `max_retries_banked` (which it starts with, so a new client can retry at
    /// once).
    pub fn new(ratio: f64, floor_per_sec: u32, max_retries_banked: u32) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        let max_balance = i64::from(max_retries_banked) * RETRY;
        RetryBudget {
            balance: AtomicI64::new(max_balance),
            per_deposit: (ratio * RETRY as f64) as i64,
            floor_per_sec: i64::from(floor_per_sec) * RETRY,
            max_balance,
            epoch: Instant::now(),
            refilled_to: AtomicU64::new(0),
        }
    }

    /// Retries available now (whole ones), before any floor still to be paid in.
    pub fn available(&self) -> u64 {
        u64::try_from(self.balance.load(Ordering::Relaxed) / RETRY).unwrap_or(0)
    }

    fn add(&self, amount: i64) {
        if amount <= 0 {
            return;
        }
        let mut current = self.balance.load(Ordering::Relaxed);
        while current < self.max_balance {
            let next = current.saturating_add(amount).min(self.max_balance);
            match self.balance.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Pays in the floor earned since the last payment.
    fn refill(&self) {
        if self.floor_per_sec == 0 {
            return;
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let last = self.refilled_to.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(last);
        let earned = (u128::from(elapsed) * self.floor_per_sec as u128
            / Duration::from_secs(1).as_nanos()) as i64;
        // Only the thread that moves the mark pays in what it covers.
        if earned > 0
            && self
                .refilled_to
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.add(earned);
        }
    }
}

impl Budget for RetryBudget {
    #[inline]
    fn deposit(&self) {
        if self.balance.load(Ordering::Relaxed) < self.max_balance {
            self.add(self.per_deposit);
        }
    }

    fn withdraw(&self) -> bool {
        self.refill();
        let mut current = self.balance.load(Ordering::Relaxed);
        while current >= RETRY {
            match self.balance.compare_exchange_weak(
                current,
                current - RETRY,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
        false
    }
}

tokio::task_local! {
    /// Set while a caller watches for refused retries (`grpc::StatusLayer`):
    /// whether the budget refused one of its call's retries.
    static REFUSED: std::cell::Cell<bool>;
}

/// Tells the caller watching, if any, that the budget refused a retry of its
/// call. Read on the refusal path alone.
#[cold]
pub(crate) fn tell_refused() {
    let _ = REFUSED.try_with(|refused| refused.set(true));
}

/// Runs `poll` watching for refused retries; `refused` keeps the answer
/// between polls.
#[cfg(feature = "tonic")]
pub(crate) fn watch_refused<R>(refused: &mut bool, poll: impl FnOnce() -> R) -> R {
    let (result, seen) = REFUSED.sync_scope(std::cell::Cell::new(*refused), || {
        let result = poll();
        (result, REFUSED.with(std::cell::Cell::get))
    });
    *refused = seen;
    result
}

/// A retry budget shared by every clone of a [`RetryLayer`](super::RetryLayer)'s services.
pub type SharedBudget = Arc<dyn Budget + Send + Sync>;

/// The default budget: retries may add 20% on top of first attempts, plus a
/// floor of 10 retries a second, with at most 100 banked for a burst (a
/// [`RetryBudget`]).
pub fn default_budget() -> SharedBudget {
    Arc::new(RetryBudget::new(0.2, 10, 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_with_time_and_the_bank_is_capped() {
        let budget = RetryBudget::new(0.0, 10, 5);
        for _ in 0..5 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw(), "the bank of 5 is spent");
        tokio::time::advance(Duration::from_millis(300)).await;
        for _ in 0..3 {
            assert!(budget.withdraw(), "10 a second: 3 after 300 ms");
        }
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(60)).await;
        let mut n = 0;
        while budget.withdraw() {
            n += 1;
        }
        assert_eq!(n, 5, "a long quiet spell banks no more than the cap");
    }

    #[test]
    fn deposits_earn_their_ratio_and_stop_at_the_cap() {
        let budget = RetryBudget::new(0.2, 0, 3);
        while budget.withdraw() {}
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 2);
        for _ in 0..1000 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 3);
        let none = RetryBudget::new(f64::NAN, 0, 0);
        none.deposit();
        assert!(!none.withdraw());
    }

    #[test]
    fn two_threads_never_withdraw_more_than_was_banked() {
        let budget = std::sync::Arc::new(RetryBudget::new(0.0, 0, 1000));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || (0..2000).filter(|_| budget.withdraw()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
