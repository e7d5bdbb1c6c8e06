//! Recent call latencies, and the percentile a hedge waits for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many latencies are kept.
const KEPT: usize = 512;
/// How many must be seen before a percentile is trusted.
pub(super) const MIN_SAMPLES: u64 = 64;
/// The percentile is recomputed every this many samples.
const EVERY: u64 = 32;

/// A ring of recent latencies, and the percentile of them, recomputed now
/// and then so that a call reads one atomic.
#[derive(Debug)]
pub(super) struct Latencies {
    percentile: f64,
    ring: Mutex<Vec<u32>>,
    seen: AtomicU64,
    /// Microseconds; 0 until enough samples were seen.
    current: AtomicU64,
}

impl Latencies {
    pub(super) fn new(percentile: f64) -> Self {
        Latencies {
            percentile,
            ring: Mutex::new(Vec::with_capacity(KEPT)),
            seen: AtomicU64::new(0),
            current: AtomicU64::new(0),
        }
    }

    /// The delay a hedge waits now, if enough calls were measured.
    pub(super) fn delay(&self) -> Option<Duration> {
        match self.current.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    pub(super) fn record(&self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = usize::try_from(n % KEPT as u64).unwrap_or(0);
        if ring.len() < KEPT {
            ring.push(micros);
        } else {
            ring[at] = micros;
        }
        if n + 1 >= MIN_SAMPLES && (n + 1) % EVERY == 0 {
            let mut sorted = ring.clone();
            drop(ring);
            let rank = ((sorted.len() as f64 - 1.0) * self.percentile).round() as usize;
            let rank = rank.min(sorted.len() - 1);
            let (_, value, _) = sorted.select_nth_unstable(rank);
            self.current.store(u64::from(*value), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_follows_recent_calls() {
        let latencies = Latencies::new(0.9);
        for i in 0..63 {
            latencies.record(Duration::from_millis(i % 10 + 1));
        }
        assert_eq!(latencies.delay(), None, "not enough calls yet");
        for i in 63..640 {
            latencies.record(Duration::from_millis(i % 10 + 1));
        }
        // 1..=10 ms evenly: the 90th percentile is 9 or 10 ms.
        let delay = latencies.delay().unwrap();
        assert!((9..=10).contains(&delay.as_millis()), "{delay:?}");
        for _ in 0..KEPT {
            latencies.record(Duration::from_millis(100));
        }
        assert_eq!(latencies.delay(), Some(Duration::from_millis(100)));
    }
}
