//! The deadline of a whole call, carried in a request's extensions, below every
//! layer that honours it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::time::Instant;

/// The instant by which a whole call must end: every attempt, and every wait
/// between attempts. Put it in a request's extensions.
///
/// [`RetryLayer`](crate::RetryLayer) starts no retry whose wait would end past it
/// (the call ends with the last attempt's result instead), and
/// [`TimeoutLayer`](crate::TimeoutLayer) cuts an attempt at it, whichever of the
/// attempt's own limit and the time left is shorter, with an
/// [`Elapsed`](crate::timeout::Elapsed) whose
/// [`is_deadline`](crate::timeout::Elapsed::is_deadline) is true.
/// [`HttpClient`](crate::HttpClient) sets it from
/// [`retry.total_timeout`](crate::retry::RetryOptions::total_timeout) or a call's
/// [`deadline`](crate::client::RequestBuilder::deadline).
///
/// It is a [`tokio::time::Instant`], so a test can pause and advance the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestDeadline(pub Instant);

/// The attempts a call with a deadline has started, counted by the timeout layer
/// so that the client's error can say how many the deadline allowed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempts(Arc<AtomicU32>);

impl Attempts {
    pub(crate) fn count(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}
