//! [`PoolLimitLayer`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;

use super::service::PoolLimitService;

/// Limits calls in flight; see the [module documentation](super).
///
/// # Clone
///
/// Every service made by one layer, and every clone, shares its slots.
#[derive(Debug, Clone)]
pub struct PoolLimitLayer {
    semaphore: Arc<Semaphore>,
    timeout: Duration,
}

impl PoolLimitLayer {
    /// At most `max` calls in flight (0 is treated as 1); a call waits at most
    /// `timeout` for a slot.
    pub fn new(max: usize, timeout: Duration) -> Self {
        PoolLimitLayer {
            semaphore: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            timeout,
        }
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

impl<S> Layer<S> for PoolLimitLayer {
    type Service = PoolLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PoolLimitService::new(inner, self.semaphore.clone(), self.timeout)
    }
}
