//! The pace learned from a provider that throttles: how far apart to send
//! attempts so that the provider accepts them.
//!
//! Off until the first throttled answer (a 429, or a 503 with a wait). Then
//! every attempt of the client is released one at a time, `interval` after the
//! one before, and each answer to a released attempt teaches:
//!
//! * Start: `interval` is the throttled answer's wait (1 s if it gave none).
//! * Until the first refusal of a paced attempt, each acceptance halves the
//!   interval (a slow start, as TCP's: a few answers reach the provider's
//!   rate from far below it).
//! * A refused attempt, sent `s` after the one before, proves `s` too short:
//!   the pace goes back to the shortest spacing the provider accepted (plus
//!   2%), and never below the longest it refused (plus 5%). A refusal at a
//!   spacing the provider once accepted (its limit moved, or others share it)
//!   slows the pace by a quarter and starts the learning over.
//! * Every 20 acceptances it tries 10% faster (never below the refused
//!   spacing plus 5%) while the two are more than 10% apart, then, settled,
//!   2% faster every 100, forgetting a little of the refusal each time, so
//!   that a provider that raises its limit is followed. Each try that is
//!   refused costs a closed gate for everyone, so tries are rare.
//! * After 30 s without a throttled answer, and nobody waiting, it turns off.
//!
//! Why not Google SRE's client-side throttling (reject locally with
//! probability `(requests − 2·accepts) / (requests + 1)`): it is made to shed
//! load from a server that is overloaded, and by design lets through twice
//! what the server accepts, so half of what it sends is still refused; each
//! refusal of a rate limiter carries a `Retry-After` that closes the gate for
//! every caller. Measured on a model of nginx's `limit_req` (see the note of
//! issue 14): 38 attempts but 64 s for 20 callers at 2 requests/s, against 40
//! attempts and 11.8 s for this pacer.

use std::time::Duration;

use tokio::time::Instant;

/// The shortest interval the pacer uses.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The longest interval the pacer starts from.
const MAX_INTERVAL: Duration = Duration::from_secs(10);
/// How long without a throttled answer before the pacer turns off.
pub(super) const QUIET: Duration = Duration::from_secs(30);
/// How long a wait to assume when a throttled answer named none.
const UNNAMED_WAIT: Duration = Duration::from_secs(1);

/// The pace, when it is on.
#[derive(Debug, Clone, Default)]
pub(super) struct Pacer {
    state: Option<Pace>,
}

#[derive(Debug, Clone)]
struct Pace {
    interval: Duration,
    /// The longest interval: the longest a caller may wait its turn.
    ceiling: Duration,
    /// When the last attempt was released (or the pacer turned on).
    last_release: Instant,
    /// The shortest spacing the provider accepted.
    good: Option<Duration>,
    /// The longest spacing the provider refused (zero: none yet).
    bad: Duration,
    /// When the last throttled answer came.
    last_throttled: Instant,
    /// Acceptances since the pace last moved, once it has settled.
    settled_accepts: u32,
    /// Refusals since the last acceptance, while learning.
    refusals: u32,
    /// Halvings of the slow start so far.
    halvings: u32,
}

/// What a released attempt carries back to the pacer with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Released {
    /// How long after the one before it went.
    pub(crate) spacing: Duration,
}

impl Pacer {
    pub(super) fn is_on(&self) -> bool {
        self.state.is_some()
    }

    pub(super) fn interval(&self) -> Option<Duration> {
        self.state.as_ref().map(|p| p.interval)
    }

    /// Turns the pacer on after a throttled answer that asked for `wait`;
    /// the pace is never slower than one attempt per `ceiling`, the longest a
    /// caller may wait its turn.
    pub(super) fn start(&mut self, now: Instant, wait: Option<Duration>, ceiling: Duration) {
        if self.state.is_some() {
            return;
        }
        let ceiling = ceiling.clamp(MIN_INTERVAL, MAX_INTERVAL);
        let interval = wait.unwrap_or(UNNAMED_WAIT).clamp(MIN_INTERVAL, ceiling);
        self.state = Some(Pace {
            interval,
            ceiling,
            last_release: now,
            good: None,
            bad: Duration::ZERO,
            last_throttled: now,
            settled_accepts: 0,
            refusals: 0,
            halvings: 0,
        });
    }

    /// When the next attempt may go, if the pacer is on.
    pub(super) fn next_release(&self) -> Option<Instant> {
        let pace = self.state.as_ref()?;
        Some(
            pace.last_release
                .checked_add(pace.interval)
                .unwrap_or(pace.last_release),
        )
    }

    /// Releases an attempt `now`.
    pub(super) fn release(&mut self, now: Instant) -> Option<Released> {
        let pace = self.state.as_mut()?;
        let spacing = now.saturating_duration_since(pace.last_release);
        pace.last_release = now;
        Some(Released { spacing })
    }

    /// The provider accepted an attempt released `released.spacing` after the
    /// one before.
    pub(super) fn accepted(&mut self, released: Released) {
        let Some(pace) = self.state.as_mut() else {
            return;
        };
        let spacing = released.spacing;
        pace.good = Some(pace.good.map_or(spacing, |g| g.min(spacing)));
        // An acceptance long after the one before (a gate's wait, say) says
        // little about the pace, nor ends a run of refusals.
        if spacing > pace.interval.saturating_mul(3) / 2 {
            return;
        }
        pace.refusals = 0;
        if pace.bad.is_zero() {
            pace.interval /= 2;
            pace.halvings += 1;
        } else {
            // Probing costs a refusal, and a refusal closes the gate for
            // everyone: probe rarely, and more rarely once settled.
            let wide = pace
                .good
                .is_some_and(|g| g.as_secs_f64() > pace.bad.as_secs_f64() * 1.1);
            pace.settled_accepts += 1;
            if pace.settled_accepts >= if wide { 20 } else { 100 } {
                pace.settled_accepts = 0;
                let step = if wide {
                    pace.interval.saturating_mul(9) / 10
                } else {
                    pace.bad = pace.bad.saturating_mul(19) / 20;
                    pace.interval.saturating_mul(49) / 50
                };
                pace.interval = step.max(pace.bad.saturating_mul(21) / 20);
            }
        }
        pace.interval = pace.interval.max(MIN_INTERVAL);
    }

    /// The provider throttled an attempt: `released` if the pacer sent it.
    pub(super) fn throttled(&mut self, now: Instant, released: Option<Released>) {
        let Some(pace) = self.state.as_mut() else {
            return;
        };
        pace.last_throttled = now;
        let Some(Released { spacing }) = released else {
            return;
        };
        // A refusal at a spacing the provider once accepted means its limit
        // moved (or others share it): back off rather than learn.
        match pace.good {
            Some(good) if spacing >= good => {
                pace.interval = (pace.interval.max(spacing).saturating_mul(5) / 4)
                    .clamp(MIN_INTERVAL, pace.ceiling);
                pace.good = None;
            }
            good => {
                pace.bad = pace.bad.max(spacing);
                pace.refusals += 1;
                let floor = pace.bad.saturating_mul(21) / 20;
                // A refusal at the first halving below the provider's own
                // wait is often its limit met exactly and missed by a few
                // milliseconds of scheduling (a `Retry-After: 1` over 2 a
                // second): try just above it once. A second refusal means the
                // limit is higher: back to just above what was accepted.
                let back = if pace.refusals == 1 && pace.halvings == 1 && good.is_some() {
                    floor
                } else {
                    good.map_or(pace.interval.saturating_mul(2), |g| {
                        g.saturating_mul(51) / 50
                    })
                };
                pace.interval = back.max(floor).clamp(MIN_INTERVAL, pace.ceiling);
            }
        }
        pace.settled_accepts = 0;
    }

    /// Turns the pacer off if no answer was throttled for [`QUIET`]; the
    /// caller knows that nobody else waits.
    pub(super) fn settle(&mut self, now: Instant) -> bool {
        if let Some(pace) = &self.state {
            if now.saturating_duration_since(pace.last_throttled) >= QUIET {
                self.state = None;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives the pacer against a provider that accepts an attempt at least
    /// `limit` after the last one it accepted; returns the spacings tried.
    fn against(limit: Duration, wait: Duration, attempts: usize) -> Vec<(Duration, bool)> {
        let start = Instant::now();
        let mut pacer = Pacer::default();
        pacer.start(start, Some(wait), MAX_INTERVAL);
        let mut now = start + wait;
        let mut last_accept = start;
        let mut gate = start + wait;
        let mut tried = Vec::new();
        for _ in 0..attempts {
            now = now.max(gate).max(pacer.next_release().unwrap());
            let released = pacer.release(now).unwrap();
            let ok = now - last_accept >= limit;
            tried.push((released.spacing, ok));
            if ok {
                last_accept = now;
                pacer.accepted(released);
            } else {
                gate = now + wait;
                pacer.throttled(now, Some(released));
            }
        }
        tried
    }

    /// Refusals among the attempts, and the spacing of the last ten (all
    /// accepted).
    fn summary(tried: &[(Duration, bool)]) -> (usize, Duration, Duration) {
        let refused = tried.iter().filter(|(_, ok)| !ok).count();
        let tail = &tried[tried.len() - 10..];
        assert!(tail.iter().all(|(_, ok)| *ok), "{tried:?}");
        let min = tail.iter().map(|(s, _)| *s).min().unwrap();
        let max = tail.iter().map(|(s, _)| *s).max().unwrap();
        (refused, min, max)
    }

    #[test]
    fn a_first_refusal_after_a_halving_tries_just_above_it_a_second_goes_back() {
        let now = Instant::now();
        let mut pacer = Pacer::default();
        pacer.start(now, Some(ms(1000)), ms(10_000));
        pacer.accepted(Released { spacing: ms(1000) });
        assert_eq!(pacer.interval(), Some(ms(500)));
        // Refused at exactly the server's limit (a few ms of jitter).
        pacer.throttled(now, Some(Released { spacing: ms(500) }));
        assert_eq!(pacer.interval(), Some(ms(525)));
        // Refused again just above it: the limit is higher; back to what
        // was accepted.
        pacer.throttled(now, Some(Released { spacing: ms(525) }));
        assert_eq!(pacer.interval(), Some(ms(1020)));
    }

    #[test]
    fn it_finds_a_rate_below_the_wait_and_stays_there() {
        // The harness: 2 a second, `Retry-After: 1`.
        let tried = against(ms(500), ms(1000), 40);
        let (refused, min, max) = summary(&tried);
        // The slow start's refusal, and one try 20 acceptances later.
        assert!(refused <= 2, "{tried:?}");
        assert!(min >= ms(500) && max <= ms(525), "{tried:?}");
        // The harness's 19 waiting callers: the first 22 attempts have one
        // refusal only.
        assert_eq!(
            tried[..22].iter().filter(|(_, ok)| !ok).count(),
            1,
            "{tried:?}"
        );
    }

    #[test]
    fn it_speeds_up_from_a_long_wait() {
        // 10 a second, and a first answer that asked for 2 s.
        let tried = against(ms(100), ms(2000), 40);
        let (refused, min, max) = summary(&tried);
        assert!(refused <= 2, "{tried:?}");
        assert!(min >= ms(100) && max <= ms(130), "{tried:?}");
    }

    #[test]
    fn a_slower_provider_is_followed_down() {
        // One every 2.5 s, though the answer asked for 1 s only.
        let tried = against(ms(2500), ms(1000), 36);
        let (refused, min, max) = summary(&tried);
        assert!(refused <= 3, "{tried:?}");
        assert!(min >= ms(2500) && max <= ms(2750), "{tried:?}");
    }

    #[test]
    fn it_turns_off_after_a_quiet_spell() {
        let now = Instant::now();
        let mut pacer = Pacer::default();
        pacer.start(now, None, MAX_INTERVAL);
        assert_eq!(pacer.interval(), Some(UNNAMED_WAIT));
        assert!(!pacer.settle(now + QUIET - ms(1)));
        pacer.throttled(now + ms(10), None);
        assert!(!pacer.settle(now + QUIET));
        assert!(pacer.settle(now + ms(10) + QUIET));
        assert!(!pacer.is_on());
    }

    #[test]
    fn extreme_waits_are_clamped() {
        let now = Instant::now();
        let mut pacer = Pacer::default();
        pacer.start(now, Some(Duration::MAX), Duration::MAX);
        assert_eq!(pacer.interval(), Some(MAX_INTERVAL));
        // Never slower than the longest a caller may wait.
        let mut pacer = Pacer::default();
        pacer.start(now, None, ms(10));
        assert_eq!(pacer.interval(), Some(ms(10)));
        let mut pacer = Pacer::default();
        pacer.start(now, Some(Duration::ZERO), Duration::ZERO);
        assert_eq!(pacer.interval(), Some(MIN_INTERVAL));
        let released = pacer.release(now).unwrap();
        pacer.accepted(released);
        assert_eq!(pacer.interval(), Some(MIN_INTERVAL));
    }
}
