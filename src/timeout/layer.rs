//! [`TimeoutLayer`].

use std::time::Duration;

use tower_layer::Layer;

use super::service::TimeoutService;

/// Applies a deadline to each call; see the [module documentation](super).
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    default: Duration,
}

impl TimeoutLayer {
    /// A layer whose calls fail after `default` unless the request carries a
    /// [`RequestTimeout`](super::RequestTimeout).
    pub const fn new(default: Duration) -> Self {
        TimeoutLayer { default }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService::new(inner, self.default)
    }
}
