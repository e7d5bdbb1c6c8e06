//! The state every service of one [`HedgeLayer`](super::HedgeLayer) shares:
//! the delay, the budgets, the latencies and the stats.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower::retry::budget::Budget;

use super::config::{Delay, Hedge};
use super::latency::Latencies;
use crate::retry::{RetryBudget, SharedBudget};
use crate::telemetry::{self, Meter};

/// What every service of one layer shares.
pub(super) struct Shared {
    /// The settings the layer was made with.
    pub(super) hedge: Hedge,
    pub(super) latencies: Option<Latencies>,
    /// The layer's own budget: `max_extra_load` of a copy per call, `burst`
    /// to start with.
    pub(super) load: RetryBudget,
    /// A retry budget copies also draw on.
    pub(super) retries: Option<SharedBudget>,
    pub(super) sent: AtomicU64,
    pub(super) won: AtomicU64,
    pub(super) refused: AtomicU64,
    /// Where copies sent, won and refused are reported.
    pub(super) meter: Meter,
}

impl Shared {
    pub(super) fn new(hedge: Hedge, retries: Option<SharedBudget>, meter: Meter) -> Self {
        Shared {
            latencies: match hedge.delay {
                Delay::Percentile(p, _) => Some(Latencies::new(p)),
                Delay::Fixed(_) => None,
            },
            hedge,
            load: RetryBudget::new(hedge.max_extra_load, 0, hedge.burst),
            retries,
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            meter,
        }
    }

    /// The same settings and name, drawing on `retries` too, with a full
    /// budget and no stats.
    pub(super) fn with_retries(&self, retries: SharedBudget) -> Self {
        Shared::new(self.hedge, Some(retries), self.meter.clone())
    }

    /// The same settings and budgets, reporting to `meter`, with a full
    /// budget and no stats.
    pub(super) fn with_meter(&self, meter: Meter) -> Self {
        Shared::new(self.hedge, self.retries.clone(), meter)
    }

    /// How long a call waits for its answer before a copy is sent.
    pub(super) fn delay(&self) -> Duration {
        match self.hedge.delay {
            Delay::Fixed(delay) => delay,
            Delay::Percentile(_, fallback) => self
                .latencies
                .as_ref()
                .and_then(Latencies::delay)
                .unwrap_or(fallback),
        }
    }

    /// Whether one more copy is within the budgets; counts it if so.
    pub(super) fn may_send(&self) -> bool {
        let allowed =
            self.load.withdraw() && self.retries.as_ref().is_none_or(|budget| budget.withdraw());
        let (counter, metric) = if allowed {
            (&self.sent, telemetry::HEDGES_SENT)
        } else {
            (&self.refused, telemetry::HEDGES_REFUSED)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.meter.count(metric);
        allowed
    }

    pub(super) fn won(&self) {
        self.won.fetch_add(1, Ordering::Relaxed);
        self.meter.count(telemetry::HEDGES_WON);
    }

    /// Learns from a call answered after `latency`, when the delay is a
    /// percentile.
    pub(super) fn record(&self, latency: Duration) {
        if let Some(latencies) = &self.latencies {
            latencies.record(latency);
        }
    }

    /// Whether calls are timed (the delay is a percentile).
    pub(super) fn measures(&self) -> bool {
        self.latencies.is_some()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("hedge", &self.hedge)
            .field("retry_budget", &self.retries.is_some())
            .finish_non_exhaustive()
    }
}
