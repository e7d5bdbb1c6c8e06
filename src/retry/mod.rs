//! Retries of transient failures with capped, jittered exponential backoff.
//!
//! [`RetryLayer`] re-sends a request when the classifier calls its outcome
//! transient (5xx, 408, 429, transport errors, attempt timeouts: see
//! [`classify`](crate::classify)). Between attempts it sleeps for
//! `min(base_delay × 2^n, max_delay)` with ±50% jitter ([`RetryConfig`]), or for
//! the server's `Retry-After` when that is longer. It never retries:
//!
//! * an outcome the classifier does not call retryable (4xx, success);
//! * a [`CircuitOpen`](crate::CircuitOpen), even under a classifier that says so;
//! * a request whose body cannot be cloned ([`ReplayRequest`]);
//! * when `Retry-After` asks for more than `max_delay`: the response is returned
//!   at once rather than holding the caller longer than the cap;
//! * when the shared retry budget is spent (retries may add 20% on top of first
//!   attempts, plus 10 retries a second; see [`RetryLayer::budget`]).
//!
//! Each retry logs `attempt {n}/{max} failed: {error}. Retrying in {delay}s` at
//! `INFO` inside the caller's span (so the request ID of
//! [`RequestIdLayer`](crate::RequestIdLayer) is on it); a success on the first
//! attempt logs at `DEBUG`.
//!
//! For calls that are not tower services, use [`with_retry`] or
//! [`with_retry_blocking`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use stache_resilience::classify::HttpClassifier;
//! use stache_resilience::retry::{RetryConfig, RetryLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::default()).classifier(HttpClassifier))
//!     .service_fn(move |_req: http::Request<String>| {
//!         let n = seen.fetch_add(1, Ordering::SeqCst);
//!         let status = if n < 2 { 503 } else { 200 };
//!         async move { Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap()) }
//!     });
//!
//! let res = svc.ready().await.unwrap().call(http::Request::new("{}".to_string())).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```

mod backoff;
mod budget;
pub mod future;
mod with_retry;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tower::retry::budget::Budget;
use tower_layer::Layer;
use tower_service::Service;

use crate::classify::{ClassifyOutcome, ErrorsAreFailures};

pub use self::backoff::{Backoff, Jitter, RetryConfig};
pub use self::budget::RetryBudget;
pub use self::with_retry::{with_retry, with_retry_blocking};
pub use crate::classify::parse_retry_after;

/// A retry budget shared by every clone of a [`RetryLayer`]'s services.
pub type SharedBudget = Arc<dyn Budget + Send + Sync>;

/// Counters kept by one [`RetryLayer`] and all its services; from
/// [`RetryLayer::stats`]. Only retries touch them: a call that succeeds at once
/// costs nothing here.
#[derive(Debug, Default)]
pub struct RetryStats {
    retries: std::sync::atomic::AtomicU64,
    budget_exhausted: std::sync::atomic::AtomicU64,
    /// The provider the `stache_retries_total` counter is labelled with.
    #[cfg(feature = "metrics")]
    label: Option<Arc<str>>,
}

impl RetryStats {
    /// Retries sent so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Retries refused because the budget was spent.
    pub fn budget_exhausted(&self) -> u64 {
        self.budget_exhausted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_retry(&self) {
        self.retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(label) = &self.label {
            ::metrics::counter!(crate::telemetry::RETRIES, "provider" => label.clone())
                .increment(1);
        }
    }

    pub(crate) fn count_budget_exhausted(&self) {
        self.budget_exhausted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The default budget: retries may add 20% on top of first attempts, plus a
/// floor of 10 retries a second, with at most 100 banked for a burst (a
/// [`RetryBudget`]).
pub fn default_budget() -> SharedBudget {
    Arc::new(RetryBudget::new(0.2, 10, 100))
}

/// Requests that the retry layer can send again.
///
/// Implemented for `http::Request<B>` when the body can be copied cheaply
/// ([`ReplayBody`]). A request whose `try_clone` gives `None` is sent once and
/// never retried.
pub trait ReplayRequest: Sized {
    /// A copy to send on the next attempt, or `None` if the request cannot be
    /// replayed.
    fn try_clone(&self) -> Option<Self>;
}

/// Request bodies that can be sent again.
///
/// Buffered bodies (`Full<Bytes>`, `Empty<Bytes>`, `Bytes`, `String`, `Vec<u8>`,
/// `()`) return a copy; streaming bodies (`hyper::body::Incoming`, boxed bodies)
/// return `None`.
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` if it cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {$(
        impl ReplayBody for $ty {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!(
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
    Bytes,
    String,
    Vec<u8>,
    &'static str,
    (),
);

impl ReplayBody for hyper::body::Incoming {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<B: ReplayBody> ReplayRequest for http::Request<B> {
    fn try_clone(&self) -> Option<Self> {
        let body = self.body().try_clone_body()?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Some(copy)
    }
}

/// Retries transient failures; see the [module documentation](self).
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
        }
    }

    /// Reports retries as `stache_retries_total{provider = label}`.
    #[cfg(feature = "metrics")]
    pub(crate) fn labelled(mut self, label: Arc<str>) -> Self {
        self.stats = Arc::new(RetryStats {
            label: Some(label),
            ..RetryStats::default()
        });
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

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            config: self.config,
            shared: Arc::new(Shared {
                budget: self.budget.clone(),
                stats: self.stats.clone(),
            }),
            classifier: self.classifier.clone(),
        }
    }
}

/// The budget and counters of one service and its clones, behind one reference
/// count: a clone of the service, and each call's handle for its retries, bump
/// one count instead of two.
pub(crate) struct Shared {
    pub(crate) budget: Option<SharedBudget>,
    pub(crate) stats: Arc<RetryStats>,
}

impl<C: fmt::Debug> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.config)
            .field("budget", &self.budget.is_some())
            .field("classifier", &self.classifier)
            .finish()
    }
}

/// A service that retries transient failures; made by [`RetryLayer`].
///
/// # Errors
///
/// Adds no failure mode: the last attempt's result is returned as it was.
///
/// # Cancellation
///
/// Dropping the response future stops at once, during an attempt or a backoff
/// sleep.
#[derive(Clone)]
pub struct RetryService<S, C = ErrorsAreFailures> {
    inner: S,
    config: RetryConfig,
    shared: Arc<Shared>,
    classifier: C,
}

impl<S, C> RetryService<S, C> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for RetryService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: fmt::Display + 'static,
    C: ClassifyOutcome<S::Response, S::Error> + Clone,
    Req: ReplayRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = future::ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        // Copy the request only when a retry is possible at all.
        let replay = if self.config.max_retries > 0 {
            req.try_clone().map(|request| future::Replay {
                // The ready service takes this call; a clone, made ready again
                // later, takes the retries.
                service: self.inner.clone(),
                request: Some(request),
                backoff: self.config.backoff(),
                shared: self.shared.clone(),
            })
        } else {
            None
        };
        let response = self.inner.call(req);
        future::ResponseFuture::new(response, replay, self.config, self.classifier.clone())
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for RetryService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish()
    }
}

#[cfg(test)]
mod tests;
