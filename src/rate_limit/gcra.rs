//! The configured limits as generic cell rate algorithms: each call reserves
//! its start when it arrives, so calls go in the order they came and each
//! knows at once how long it will wait.

use std::time::Duration;

use tokio::time::Instant;

use super::config::RateLimit;

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);

/// One limit: a unit every `emission`, up to `tolerance` ahead of schedule.
#[derive(Debug, Clone)]
struct Cell {
    emission: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next unit; `None` before the first.
    tat: Option<Instant>,
}

impl Cell {
    fn new(per_minute: u32, burst: u32) -> Cell {
        let emission = Duration::from_secs(60) / per_minute.max(1);
        Cell {
            emission,
            tolerance: emission.saturating_mul(burst.saturating_sub(1)),
            tat: None,
        }
    }

    /// When a call arriving `now` may start.
    fn start(&self, now: Instant) -> Instant {
        match self.tat {
            Some(tat) if tat > now => tat
                .checked_sub(self.tolerance)
                .map_or(now, |start| start.max(now)),
            _ => now,
        }
    }

    /// Gives back `units` charged to a call that never started.
    fn refund(&mut self, units: u32) {
        let cost = self.emission.saturating_mul(units).min(TEN_YEARS);
        self.tat = self.tat.and_then(|tat| tat.checked_sub(cost));
    }

    /// Charges `units` to a call starting at `start`.
    fn charge(&mut self, start: Instant, units: u32) {
        let from = self.tat.map_or(start, |tat| tat.max(start));
        // A charge of more than ten years is as good as forever, and keeps
        // the clock arithmetic in range.
        let cost = self.emission.saturating_mul(units).min(TEN_YEARS);
        self.tat = Some(from.checked_add(cost).unwrap_or(from));
    }
}

/// The request and token limits of one [`RateLimit`].
#[derive(Debug, Clone)]
pub(super) struct Buckets {
    requests: Option<Cell>,
    /// Tokens are charged after the fact: no tolerance, a call goes once the
    /// tokens before it are earned back.
    tokens: Option<Cell>,
    /// When the last call started, to keep evenly spaced requests apart even
    /// when one woke late (only without a burst).
    last_start: Option<Instant>,
    spacing: Option<Duration>,
}

impl Buckets {
    pub(super) fn new(limit: &RateLimit) -> Buckets {
        let requests = limit.requests_per_minute.map(|n| Cell::new(n, limit.burst));
        Buckets {
            spacing: requests
                .as_ref()
                .filter(|_| limit.burst <= 1)
                .map(|cell| cell.emission),
            requests,
            tokens: limit.tokens_per_minute.map(|n| Cell::new(n, 1)),
            last_start: None,
        }
    }

    /// Reserves a start for a call of `cost` tokens arriving `now`, unless it
    /// would start after `latest`: then nothing is reserved, and the wait it
    /// would have had is returned.
    pub(super) fn reserve(
        &mut self,
        now: Instant,
        cost: u32,
        latest: Instant,
    ) -> Result<Instant, Duration> {
        let mut start = now;
        if let Some(cell) = &self.requests {
            start = start.max(cell.start(now));
        }
        if let Some(cell) = &self.tokens {
            start = start.max(cell.start(now));
        }
        if start > latest {
            return Err(start - now);
        }
        if let Some(cell) = &mut self.requests {
            cell.charge(start, 1);
        }
        if let Some(cell) = &mut self.tokens {
            cell.charge(start, cost);
        }
        Ok(start)
    }

    /// Gives back what [`reserve`](Self::reserve) charged a call of `cost`
    /// tokens that never started (its caller gave up, or it was refused
    /// later): the calls after it keep their starts, and the next to arrive
    /// has the room.
    pub(super) fn give_back(&mut self, cost: u32) {
        if let Some(cell) = &mut self.requests {
            cell.refund(1);
        }
        if let Some(cell) = &mut self.tokens {
            cell.refund(cost);
        }
    }

    /// Corrects a call's charge of `reserved` tokens to `used`: the tokens
    /// beyond the estimate are charged `now`, the ones short of it given back.
    pub(super) fn adjust(&mut self, reserved: u32, used: u64, now: Instant) {
        let Some(cell) = &mut self.tokens else {
            return;
        };
        let used = u32::try_from(used).unwrap_or(u32::MAX);
        if used > reserved {
            cell.charge(now, used - reserved);
        } else {
            cell.refund(reserved - used);
        }
    }

    /// Whether a call may start `now`, its reserved start reached: with
    /// evenly spaced requests, the one before it must be `spacing` ago, even
    /// if it woke late. `Err` gives the instant to wait for.
    pub(super) fn begin(&mut self, now: Instant) -> Result<(), Instant> {
        if let (Some(spacing), Some(last)) = (self.spacing, self.last_start) {
            // Plus 2%: a call's start and its arrival at the provider are apart
            // by a delay that varies (scheduling, the write), and a provider
            // that enforces the same spacing refuses a call that arrives a few
            // milliseconds early.
            if let Some(earliest) = last.checked_add(spacing + spacing / 50) {
                if earliest > now {
                    return Err(earliest);
                }
            }
        }
        self.last_start = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_are_spaced_and_reserved_in_order() {
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        let mut buckets = Buckets::new(&RateLimit::per_minute(120));
        let starts: Vec<Duration> = (0..4)
            .map(|_| buckets.reserve(now, 0, far).unwrap() - now)
            .collect();
        assert_eq!(starts, [ms(0), ms(500), ms(1000), ms(1500)]);
        // A fifth that may wait only a second is refused, and reserves nothing.
        assert_eq!(buckets.reserve(now, 0, now + ms(1000)), Err(ms(2000)));
        assert_eq!(buckets.reserve(now, 0, far).unwrap() - now, ms(2000));
    }

    #[test]
    fn a_burst_goes_back_to_back_then_is_spaced() {
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        let mut buckets = Buckets::new(&RateLimit::per_minute(60).burst(3));
        let starts: Vec<Duration> = (0..5)
            .map(|_| buckets.reserve(now, 0, far).unwrap() - now)
            .collect();
        assert_eq!(starts, [ms(0), ms(0), ms(0), ms(1000), ms(2000)]);
        // After a quiet spell the burst is back, and no more than it.
        let later = now + Duration::from_secs(60);
        let starts: Vec<Duration> = (0..4)
            .map(|_| buckets.reserve(later, 0, far).unwrap() - later)
            .collect();
        assert_eq!(starts, [ms(0), ms(0), ms(0), ms(1000)]);
    }

    #[test]
    fn tokens_are_earned_back_before_the_next_call() {
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        // 6,000 tokens a minute: 100 a second.
        let mut buckets = Buckets::new(&RateLimit::tokens_only(6_000));
        assert_eq!(buckets.reserve(now, 250, far), Ok(now));
        assert_eq!(buckets.reserve(now, 100, far), Ok(now + ms(2500)));
        assert_eq!(buckets.reserve(now, 0, far), Ok(now + ms(3500)));
        // Both limits: the later of the two starts.
        let mut both = Buckets::new(&RateLimit::per_minute(600).tokens_per_minute(6_000));
        assert_eq!(both.reserve(now, 10, far), Ok(now));
        assert_eq!(both.reserve(now, 10, far), Ok(now + ms(100)));
        assert_eq!(both.reserve(now, 1_000, far), Ok(now + ms(200)));
        assert_eq!(both.reserve(now, 0, far), Ok(now + ms(10_200)));
    }

    #[test]
    fn extreme_values_neither_panic_nor_overflow() {
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        let mut buckets = Buckets::new(
            &RateLimit::per_minute(u32::MAX)
                .tokens_per_minute(1)
                .burst(u32::MAX),
        );
        assert_eq!(buckets.reserve(now, u32::MAX, far), Ok(now));
        // u32::MAX tokens at one a minute: refused for any deadline.
        assert!(buckets.reserve(now, 1, far).is_err());
    }

    #[test]
    fn a_late_waker_keeps_the_next_call_spaced() {
        let now = Instant::now();
        let mut buckets = Buckets::new(&RateLimit::per_minute(120));
        assert_eq!(buckets.begin(now + ms(3)), Ok(()));
        assert_eq!(buckets.begin(now + ms(501)), Err(now + ms(513)));
        assert_eq!(buckets.begin(now + ms(513)), Ok(()));
        let mut bursty = Buckets::new(&RateLimit::per_minute(120).burst(2));
        assert_eq!(bursty.begin(now), Ok(()));
        assert_eq!(bursty.begin(now), Ok(()));
    }
}
