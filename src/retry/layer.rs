//! [`RetryLayer`].

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::backoff::RetryConfig;
use super::budget::{SharedBudget, default_budget};
use super::replay::Replay;
use super::service::RetryService;
use super::stats::{RetryStats, Shared};
use crate::classify::ErrorsAreFailures;
use crate::telemetry::Meter;

/// Retries transient failures; see the [module documentation](super).
///
/// # Clone
///
/// Every service made by one layer, and every clone of them, shares one retry
/// budget.
#[derive(Clone)]
pub struct RetryLayer<C = ErrorsAreFailures> {
    config: RetryConfig,
    budget: Option<SharedBudget>,
    stats: Arc<RetryStats>,
    classifier: C,
    replay: Replay,
}

impl RetryLayer {
    /// A layer with `config`, the [default budget](default_budget) and the default
    /// classifier (every `Err` is retryable).
    pub fn new(config: RetryConfig) -> Self {
        RetryLayer {
            config,
            budget: Some(default_budget()),
            stats: Arc::default(),
            classifier: ErrorsAreFailures,
            replay: Replay::Idempotent,
        }
    }
}

impl<C> RetryLayer<C> {
    /// Replaces the classifier that decides what is retried.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2> {
        RetryLayer {
            config: self.config,
            budget: self.budget,
            stats: self.stats,
            classifier,
            replay: self.replay,
        }
    }

    /// Sets which requests may be sent again (default [`Replay::Idempotent`]: a
    /// request that is not idempotent is retried only when the server provably
    /// did not act on it).
    pub fn replay(mut self, replay: Replay) -> Self {
        self.replay = replay;
        self
    }

    /// Names the layer: with the feature `metrics`, its attempts, retries and
    /// budget refusals are reported labelled `provider = name` (see
    /// [`telemetry`](crate::telemetry)). The layer returned starts with fresh
    /// [`stats`](Self::stats).
    pub fn provider(mut self, name: impl Into<Arc<str>>) -> Self {
        self.stats = Arc::new(RetryStats::metered(Meter::named(name.into())));
        self
    }

    /// The counters shared by every service this layer makes.
    pub fn stats(&self) -> Arc<RetryStats> {
        self.stats.clone()
    }

    /// Replaces the retry budget, for example with a
    /// [`TpsBudget`](tower::retry::budget::TpsBudget) of other proportions, or one
    /// shared with another layer.
    pub fn budget(mut self, budget: SharedBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Turns the retry budget off: every retryable failure is retried up to
    /// `max_retries` times, whatever the overall retry rate.
    pub fn without_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The retry settings.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }
}

impl<S: Clone, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Arc::new(Shared {
            config: self.config,
            template: inner.clone(),
            budget: self.budget.clone(),
            stats: self.stats.clone(),
            warned_unreplayable: Default::default(),
            warned_outgrown: Default::default(),
        });
        RetryService::new(
            inner,
            self.config,
            shared,
            self.classifier.clone(),
            self.replay,
        )
    }
}

impl<C: fmt::Debug> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.config)
            .field("budget", &self.budget.is_some())
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish()
    }
}
