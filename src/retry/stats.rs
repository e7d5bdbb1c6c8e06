//! The counters one [`RetryLayer`](super::RetryLayer) keeps, and what its
//! services share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::budget::SharedBudget;
use crate::telemetry::{self, Meter};

/// Counters kept by one [`RetryLayer`](super::RetryLayer) and all its services; from
/// [`RetryLayer::stats`](super::RetryLayer::stats). Only retries touch them: a call that succeeds at once
/// costs nothing here.
#[derive(Debug, Default)]
pub struct RetryStats {
    calls: AtomicU64,
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    /// Where the counters are also reported, once the layer is named.
    meter: Meter,
}

impl RetryStats {
    /// Counters that also report to `meter`.
    pub(super) fn metered(meter: Meter) -> Self {
        RetryStats {
            meter,
            ..RetryStats::default()
        }
    }

    /// Attempts sent so far: first attempts and retries. (Hedged copies made
    /// below are counted by their own layer.)
    pub fn attempts(&self) -> u64 {
        self.calls.load(Ordering::Relaxed) + self.retries()
    }

    /// Retries sent so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Retries refused because the budget was spent.
    pub fn budget_exhausted(&self) -> u64 {
        self.budget_exhausted.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn count_first(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.meter.count(telemetry::ATTEMPTS);
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.meter.count(telemetry::ATTEMPTS);
        self.meter.count(telemetry::RETRIES);
    }

    pub(crate) fn count_budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
        self.meter.count(telemetry::RETRY_BUDGET_EXHAUSTED);
    }
}

/// The budget and counters of one service and its clones, behind one reference
/// count: a clone of the service, and each call's handle for its retries, bump
/// one count instead of two.
pub(crate) struct Shared<S> {
    /// The layer's config, read by each call's future rather than copied
    /// into it.
    pub(crate) config: super::RetryConfig,
    /// The service the layer wrapped: each retry goes to a clone of it, made
    /// when the retry is decided.
    pub(crate) template: S,
    pub(crate) budget: Option<SharedBudget>,
    pub(crate) stats: Arc<RetryStats>,
    /// Whether this service has said that it met a request it cannot replay.
    pub(crate) warned_unreplayable: std::sync::atomic::AtomicBool,
    pub(crate) warned_outgrown: std::sync::atomic::AtomicBool,
}

impl<S> Shared<S> {
    /// Says, once per service, that a request is sent without retries because
    /// its body cannot be copied.
    #[cold]
    pub(crate) fn unreplayable(&self) {
        if !self.warned_unreplayable.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a request body that cannot be copied, or is larger than max_replay_bytes by its size hint, is sent once and never retried; buffer it (`Full<Bytes>`), wrap it in a `TeeBody`, or raise `RetryConfig::max_replay_bytes` to make it retryable. Said once per service"
            );
        }
    }

    /// Says, once per service, that a failed attempt is not retried because its
    /// body outgrew `max_replay_bytes` (or failed) while it was sent.
    #[cold]
    pub(crate) fn outgrown(&self, attempt: u32, total: u32) {
        if !self.warned_outgrown.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                attempt,
                "attempt {attempt}/{total} failed and is not retried: its request body was larger than max_replay_bytes, or failed while it was sent, so it cannot be sent again; raise `RetryConfig::max_replay_bytes` to retry such bodies. Said once per service"
            );
        } else {
            tracing::debug!(
                attempt,
                "attempt {attempt}/{total} failed and is not retried: its request body cannot be sent again"
            );
        }
    }
}
