//! [`TokenReservation`]: the tokens a call reserved, settled from what the
//! provider reports it used.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::limiter::RateLimiter;
use super::limiter::lock;

/// The tokens a call reserved from a limit with `tokens_per_minute` (its
/// declared [`Cost`](super::Cost): an estimate), in the extensions of its
/// `2xx` answer, to be settled once the answer says what it used.
///
/// [`settle`](Self::settle) charges the difference, or gives it back, so that
/// a fleet of calls whose estimates are high does not starve itself, nor one
/// whose estimates are low overshoot the limit. Dropped unsettled, the
/// estimate stands. An attempt answered with an error status or no answer
/// gives its tokens back at once: the provider charged nothing. (A call
/// whose turn never came gives them back too.)
/// [`HttpClient`](crate::HttpClient) settles from
/// [`Response::usage`](crate::client::Response::usage), and a stream read
/// in a [dialect](crate::provider::dialect) from its usage at its end.
///
/// Settled against the limits kept in the process; a [fleet](super::Fleet)'s
/// limits in Redis keep the estimate.
///
/// Clones share the reservation: it is settled once, by the first.
#[derive(Clone)]
pub struct TokenReservation {
    limiter: RateLimiter,
    tokens: u32,
    settled: Arc<AtomicBool>,
}

impl TokenReservation {
    pub(super) fn new(limiter: RateLimiter, tokens: u32) -> Self {
        TokenReservation {
            limiter,
            tokens,
            settled: Arc::default(),
        }
    }

    /// The tokens reserved.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    /// Corrects the reservation to `used` tokens: the calls after it start
    /// as if it had declared that.
    pub fn settle(self, used: u64) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.limiter.inner();
        if let Some(buckets) = lock(&inner.state).buckets.as_mut() {
            buckets.adjust(self.tokens, used, tokio::time::Instant::now());
        }
        if used != u64::from(self.tokens) {
            tracing::debug!(
                reserved = self.tokens,
                used,
                "token reservation settled from the reported usage"
            );
        }
    }

    /// Gives every token back: the provider charged nothing.
    pub(super) fn give_back(self) {
        self.settle(0);
    }
}

impl fmt::Debug for TokenReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenReservation")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}
