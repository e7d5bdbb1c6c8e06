//! A time window of call counts in fixed memory, shared lock-free by every
//! caller of one breaker.
//!
//! The window is ten buckets, each `window / 10` wide. A bucket is one atomic
//! word: a tag telling which stretch of time it counts, the calls counted, and
//! how many of them were marked (failed, or slow). A record lands in the bucket
//! of the current stretch, restarting it if it still holds an older one; a sum
//! adds the buckets whose tags belong to the ten latest stretches; a stale tag
//! is simply not counted.
//!
//! Tags wrap (after more than 9 days of 100 ms stretches), so the window also
//! keeps the latest stretch in full. A record that finds the window idle for a
//! whole span sweeps every bucket first, so that no tag of a stretch long gone
//! can pass for a current one; and it is the full stretch that tells a late
//! record (a caller that read the clock before another moved the bucket on,
//! dropped) from a bucket left over from long ago (restarted).
//!
//! One more bit of the word says a look at the window was left pending in
//! that stretch (see `Judge` in `rules`). It lives in the word that every
//! record updates, so that a record and the flag, both read-modify-writes of
//! one atomic, are ordered: whichever comes second sees the first.

use crate::sync::{AtomicU64, Ordering};

/// Buckets per window.
pub(super) const BUCKETS: u64 = 10;

const COUNT_BITS: u32 = 20;
/// The most calls one bucket counts; further records in its stretch are
/// dropped, so the rate stays the one of the calls counted.
pub(super) const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// The pending-look bit.
const PENDING: u64 = 1 << (2 * COUNT_BITS);
const TAG_SHIFT: u32 = 2 * COUNT_BITS + 1;
/// Tags run from 1 to `TAGS`; 0 marks a bucket never used (or cleared).
const TAGS: u64 = (1 << (64 - TAG_SHIFT)) - 1;

pub(super) struct Window {
    /// Nanoseconds per bucket, at least 1.
    width: u64,
    /// The latest stretch a record reached, in full.
    latest: AtomicU64,
    buckets: [AtomicU64; BUCKETS as usize],
}

/// What a record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Recorded {
    /// The record started a new stretch: older counts left the window with it.
    pub(super) fresh: bool,
    /// A look was left pending in this stretch.
    pub(super) pending: bool,
}

/// The counts over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Counts {
    pub(super) calls: u32,
    pub(super) marked: u32,
}

impl Window {
    /// A window spanning `span_nanos` (ten buckets of a tenth each).
    pub(super) fn new(span_nanos: u64) -> Self {
        Window {
            width: (span_nanos / BUCKETS).max(1),
            latest: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one call at `now` (nanoseconds on the breaker's clock), marked or
    /// not.
    pub(super) fn record(&self, now: u64, marked: bool) -> Recorded {
        let stretch = now / self.width;
        let latest = self.latest.load(Ordering::Acquire);
        if stretch > latest {
            let before = self.latest.fetch_max(stretch, Ordering::AcqRel);
            if before < stretch && stretch - before >= BUCKETS {
                self.sweep();
            }
        } else if stretch + BUCKETS <= latest {
            // So late that the window has left it behind.
            return Recorded::default();
        }
        let tag = tag(stretch);
        let bucket = &self.buckets[(stretch % BUCKETS) as usize];
        let one = (1 << COUNT_BITS) | u64::from(marked);
        let mut current = bucket.load(Ordering::Acquire);
        loop {
            let held = current >> TAG_SHIFT;
            let pending = held == tag && current & PENDING != 0;
            let next = if held == tag {
                if (current >> COUNT_BITS) & COUNT_MAX == COUNT_MAX {
                    return Recorded {
                        fresh: false,
                        pending,
                    };
                }
                current + one
            } else {
                // How many stretches the bucket's tag is ahead of ours: if that
                // is a stretch some record has reached, a caller that read the
                // clock later has moved the bucket on, and this late record is
                // dropped. Otherwise the bucket holds an older stretch.
                let ahead = (held + TAGS - tag) % TAGS;
                if held != 0 && stretch + ahead <= self.latest.load(Ordering::Acquire) {
                    return Recorded::default();
                }
                (tag << TAG_SHIFT) | one
            };
            match bucket.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Recorded {
                        fresh: held != tag,
                        pending,
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Leaves a look pending in the stretch of `now`, unless a newer stretch
    /// has started (its first record looked anyway).
    pub(super) fn flag(&self, now: u64) {
        let stretch = now / self.width;
        let tag = tag(stretch);
        let bucket = &self.buckets[(stretch % BUCKETS) as usize];
        let mut current = bucket.load(Ordering::Acquire);
        while current >> TAG_SHIFT == tag && current & PENDING == 0 {
            match bucket.compare_exchange(
                current,
                current | PENDING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }

    /// The counts of the ten latest stretches up to `now`.
    pub(super) fn counts(&self, now: u64) -> Counts {
        let stretch = now / self.width;
        let mut counts = Counts::default();
        for back in 0..BUCKETS.min(stretch + 1) {
            let at = stretch - back;
            let word = self.buckets[(at % BUCKETS) as usize].load(Ordering::Acquire);
            if word >> TAG_SHIFT == tag(at) {
                // At most ten buckets of 2^20 each: no overflow of a u32.
                counts.calls += ((word >> COUNT_BITS) & COUNT_MAX) as u32;
                counts.marked += (word & COUNT_MAX) as u32;
            }
        }
        counts
    }

    /// Empties every bucket: the window was idle for at least a whole span,
    /// so all it holds is stale, and some of it may carry the tag of a
    /// current stretch. A caller of the new stretch that records in the same
    /// instant may lose its count: one call, once after a long quiet.
    fn sweep(&self) {
        for bucket in &self.buckets {
            // An exchange, not a store, so that the sweep takes its place
            // among the records' exchanges on each bucket (with a plain store
            // loom finds an interleaving where a newer record's count is lost).
            bucket.swap(0, Ordering::AcqRel);
        }
    }

    /// Forgets every count (a new period of the circuit starts).
    pub(super) fn clear(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Release);
        }
    }
}

/// The tag of a stretch: 1 to `TAGS`, wrapping after `TAGS` stretches (more
/// than 9 days at the narrowest bucket of 100 ms).
const fn tag(stretch: u64) -> u64 {
    stretch % TAGS + 1
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("span_nanos", &(self.width * BUCKETS))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn counts_cover_the_ten_latest_buckets() {
        let window = Window::new(1000 * MS); // ten buckets of 100 ms
        assert!(
            window.record(0, false).fresh,
            "the first record starts a stretch"
        );
        assert!(!window.record(50 * MS, true).fresh, "the same stretch");
        assert_eq!(
            window.counts(50 * MS),
            Counts {
                calls: 2,
                marked: 1
            }
        );
        assert!(window.record(950 * MS, true).fresh);
        assert_eq!(
            window.counts(999 * MS),
            Counts {
                calls: 3,
                marked: 2
            }
        );
        // At 1000 ms the first bucket (0-100 ms) has left the window.
        assert_eq!(
            window.counts(1000 * MS),
            Counts {
                calls: 1,
                marked: 1
            }
        );
        // A record in the reused slot restarts it rather than adding to it.
        assert!(window.record(1010 * MS, false).fresh);
        assert_eq!(
            window.counts(1010 * MS),
            Counts {
                calls: 2,
                marked: 1
            }
        );
        assert_eq!(
            window.counts(1999 * MS),
            Counts {
                calls: 1,
                marked: 0
            }
        );
        assert_eq!(window.counts(2000 * MS), Counts::default());
        window.record(2010 * MS, true);
        window.clear();
        assert_eq!(window.counts(2010 * MS), Counts::default());
    }

    #[test]
    fn a_late_record_does_not_wipe_a_newer_bucket() {
        let window = Window::new(1000 * MS);
        window.record(1050 * MS, true);
        // A caller that read the clock at 50 ms records after that: same slot,
        // older stretch.
        assert_eq!(window.record(50 * MS, true), Recorded::default());
        assert_eq!(
            window.counts(1050 * MS),
            Counts {
                calls: 1,
                marked: 1
            }
        );
    }

    #[test]
    fn a_full_bucket_stops_counting_rather_than_overflowing() {
        let window = Window::new(1000 * MS);
        for _ in 0..COUNT_MAX {
            window.record(0, false);
        }
        window.record(0, true);
        assert_eq!(
            window.counts(0),
            Counts {
                calls: COUNT_MAX as u32,
                marked: 0
            }
        );
        // The next bucket counts again.
        assert!(window.record(100 * MS, true).fresh);
        assert_eq!(
            window.counts(100 * MS),
            Counts {
                calls: COUNT_MAX as u32 + 1,
                marked: 1
            }
        );
    }

    #[test]
    fn a_pending_look_is_seen_by_the_next_records_of_its_stretch_only() {
        let window = Window::new(1000 * MS);
        window.record(0, true);
        window.flag(0);
        let seen = window.record(10 * MS, false);
        assert!(seen.pending && !seen.fresh);
        assert_eq!(
            window.counts(10 * MS),
            Counts {
                calls: 2,
                marked: 1
            },
            "the bit is no count"
        );
        let next = window.record(100 * MS, false);
        assert!(
            next.fresh && !next.pending,
            "a new stretch starts without it"
        );
        // Flagging a stretch that a newer one replaced does nothing.
        window.flag(0);
        assert!(!window.record(110 * MS, false).pending);
    }

    #[test]
    fn a_long_quiet_spell_neither_blinds_the_window_nor_revives_old_counts() {
        const WIDTH: u64 = 100 * MS;
        // One bucket left alone for more than half the tag range while others
        // keep counting (every fifth stretch, so never a jump that sweeps): by
        // tags alone its old stretch would look newer than the call.
        let window = Window::new(10 * WIDTH);
        window.record(0, true);
        let later = (TAGS / 2 + 7) / 10 * 10; // the same bucket as stretch 0
        assert!(later % TAGS > TAGS / 2);
        for stretch in (1..later).step_by(5) {
            window.record(stretch * WIDTH, false);
        }
        assert!(
            window.record(later * WIDTH, true).fresh,
            "counted, restarting the bucket"
        );
        assert_eq!(window.counts(later * WIDTH).marked, 1);
        // Idle for exactly as many stretches as it takes for the same bucket
        // to carry the same tag again: swept, not revived.
        let window = Window::new(10 * WIDTH);
        for _ in 0..3 {
            window.record(0, true);
        }
        let wrapped = 10 * TAGS;
        assert_eq!((tag(wrapped), wrapped % BUCKETS), (tag(0), 0));
        window.record(wrapped * WIDTH, false);
        assert_eq!(
            window.counts(wrapped * WIDTH),
            Counts {
                calls: 1,
                marked: 0
            }
        );
    }

    #[test]
    fn tags_wrap_without_a_gap() {
        assert_eq!(tag(0), 1);
        assert_eq!(tag(TAGS - 1), TAGS);
        assert_eq!(tag(TAGS), 1);
        // The far end of the clock: no overflow anywhere.
        let window = Window::new(1000 * MS);
        window.record(u64::MAX, true);
        assert_eq!(window.counts(u64::MAX).calls, 1);
    }
}
