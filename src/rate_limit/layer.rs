//! [`RateLimitLayer`] and [`RateLimitService`]: a [`RateLimiter`] in front of
//! any tower service of `http` requests.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::time::Sleep;

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::limiter::RateLimiter;
use super::turn::Turn;
use super::window::Place;
use crate::deadline::RequestDeadline;
use crate::error::BoxError;
use std::future::Future;
use tokio::sync::futures::OwnedNotified;

/// The tokens a request will consume, for a limit with `tokens_per_minute`:
/// put it in the request's extensions (what
/// [`RequestBuilder::cost`](crate::client::RequestBuilder::cost) does). A
/// request without one costs no tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost(pub u32);

/// Waits for each request's turn at a shared [`RateLimiter`], and teaches it
/// from each answer; see the [module documentation](super).
///
/// Put it below the retry layer, so that every attempt takes its turn, and
/// above the timeout layer, so that the wait does not eat an attempt's time:
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::rate_limit::{RateLimit, RateLimitLayer, RateLimiter};
/// use stache_resilience::{RetryConfig, RetryLayer, TimeoutLayer};
/// use stache_resilience::classify::HttpClassifier;
/// use tower::ServiceBuilder;
///
/// let limiter = RateLimiter::with_limit(RateLimit::per_minute(600)).unwrap();
/// let stack = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryConfig::default()).classifier(HttpClassifier))
///     .layer(RateLimitLayer::new(limiter.clone()))
///     .layer(TimeoutLayer::new(Duration::from_secs(30)))
///     .service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::io::Error>(http::Response::new(String::new()))
///     });
/// # drop(stack);
/// ```
///
/// # Clone
///
/// Every service made by one layer, and every clone, shares its limiter.
#[derive(Debug, Clone, Default)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// A layer waiting on `limiter` (clones share its state).
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer { limiter }
    }

    /// The limiter the services wait on.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.limiter.clone())
    }
}

/// The service of [`RateLimitLayer`].
///
/// # Readiness
///
/// While the provider's gate is closed (after a 429 or a spent quota), the
/// service is not ready: `poll_ready` is Pending until the gate opens (plus a
/// random part of the wait, so that the waiting crowd is spread), and the
/// service below is not asked for readiness meanwhile, so that it holds no
/// slot through the wait. A gate that opens later than the limiter's longest
/// wait does not hold readiness: the call is refused at once instead. What
/// depends on the request stays in `call`: the configured limits (its token
/// [`Cost`]), the learned pace, and the refusal of a call whose turn is past
/// its deadline.
#[derive(Debug)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: RateLimiter,
    /// The wait for the gate, while readiness waits for it.
    gate: Option<Pin<Box<Sleep>>>,
    /// The place in the cold-start window readiness took, for the next call.
    place: Option<Place>,
    /// The wait for a place to free, while readiness waits for one.
    freed: Option<Pin<Box<OwnedNotified>>>,
}

impl<S: Clone> Clone for RateLimitService<S> {
    fn clone(&self) -> Self {
        RateLimitService::new(self.inner.clone(), self.limiter.clone())
    }
}

impl<S> RateLimitService<S> {
    /// Wraps `inner`, waiting on `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimitService {
            inner,
            limiter,
            gate: None,
            place: None,
            freed: None,
        }
    }

    /// The limiter this service waits on.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Readiness while the cold-start window is full: Pending until a place
    /// frees (or the window grows); Ready at once without a window.
    fn poll_place(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(window) = self.limiter.window() else {
            return Poll::Ready(());
        };
        loop {
            if let Some(place) = Place::take(window) {
                self.freed = None;
                self.place = Some(place);
                return Poll::Ready(());
            }
            let freed = self.freed.get_or_insert_with(|| Box::pin(window.freed()));
            if freed.as_mut().poll(cx).is_ready() {
                // Woken: try again, with a new wait if the place went to
                // another caller first.
                self.freed = None;
                continue;
            }
            // Registered for a wake-up: a place freed meanwhile is taken now.
            if let Some(place) = Place::take(window) {
                self.freed = None;
                self.place = Some(place);
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
    }
}

impl<S, B, RB> Service<http::Request<B>> for RateLimitService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, http::Request<B>>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.limiter.engaged() {
            ready!(self.limiter.poll_gate(&mut self.gate, cx));
            if self.place.is_none() {
                ready!(self.poll_place(cx));
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let place = self.place.take();
        // A limiter made `per_model` keeps each model's gate and pace apart;
        // the answer teaches the model's.
        let model = self.limiter.for_request(req.extensions());
        if !self.limiter.engaged() && model.as_ref().is_none_or(|m| !m.engaged()) {
            let learner = model.unwrap_or_else(|| self.limiter.clone());
            return ResponseFuture::called(self.inner.call(req), learner, place);
        }
        // A clone, made ready once the turn has come, takes the call, and the
        // service made ready here is swapped for another unready clone: what
        // it reserved (a pool's slot) is given back rather than held through
        // the wait. A call consumes readiness in any case.
        let inner = self.inner.clone();
        self.inner = inner.clone();
        let cost = req.extensions().get::<Cost>().map_or(0, |c| c.0);
        let deadline = req.extensions().get::<RequestDeadline>().map(|d| d.0);
        let learner = model.clone().unwrap_or_else(|| self.limiter.clone());
        let turn = Turn::for_model(self.limiter.clone(), model, cost, deadline);
        ResponseFuture::waiting(turn, inner, req, learner, place)
    }
}
