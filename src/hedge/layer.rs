//! [`HedgeLayer`] and [`HedgeService`]: a second copy of a slow idempotent
//! attempt, the first answer kept.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tower::retry::budget::Budget;
use tower_layer::Layer;
use tower_service::Service;

use super::config::Hedge;
use super::future::ResponseFuture;
use super::shared::Shared;
use crate::error::{BoxError, ConfigError};
use crate::retry::{ReplayBody, ReplayRequest, SharedBudget};
use crate::telemetry::Meter;

/// A request extension: never hedge this request (a stream, whose copy would
/// double the tokens it costs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoHedge;

/// Requests a [`HedgeService`] may send a copy of: those its
/// [`ReplayRequest`] says are safe to repeat and can copy, unless
/// [`may_hedge`](Self::may_hedge) says no. Implemented for `http::Request<B>`
/// (no copy when it carries [`NoHedge`]) and `reqwest::Request` (feature
/// `reqwest`).
pub trait HedgeRequest: ReplayRequest {
    /// Whether this request may get a copy at all. The default is yes.
    fn may_hedge(&self) -> bool {
        true
    }
}

impl<B: ReplayBody> HedgeRequest for http::Request<B> {
    fn may_hedge(&self) -> bool {
        self.extensions().get::<NoHedge>().is_none()
    }
}

#[cfg(feature = "reqwest")]
impl HedgeRequest for reqwest::Request {}

/// Hedges sent and won, from [`HedgeLayer::stats`]; also in
/// [`ClientStats::hedge`](crate::client::ClientStats::hedge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HedgeStats {
    /// Second copies sent.
    pub sent: u64,
    /// Second copies whose answer came first (and was kept).
    pub won: u64,
    /// Copies that were due but refused by the budget (the layer's own, or
    /// the retry budget it draws on).
    pub refused: u64,
}

/// Sends a second copy of a slow idempotent request and keeps the first
/// answer; see the [module documentation](super).
///
/// # Clone
///
/// Every service made by one layer, and every clone, shares one budget, one
/// set of stats and (for a percentile) one record of latencies.
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    shared: Option<Arc<Shared>>,
}

impl HedgeLayer {
    /// A layer hedging by `hedge`.
    ///
    /// # Errors
    ///
    /// The rule `hedge` breaks ([`Hedge::validate`]).
    pub fn new(hedge: Hedge) -> Result<Self, ConfigError> {
        hedge.validate()?;
        Ok(HedgeLayer {
            shared: Some(Arc::new(Shared::new(hedge, None, Meter::default()))),
        })
    }

    /// A layer that never hedges: every request passes through untouched.
    pub fn off() -> Self {
        HedgeLayer { shared: None }
    }

    /// Copies also draw on `budget`, a retry budget (share the one a
    /// [`RetryLayer`](crate::RetryLayer) above uses, so that retries and
    /// copies together stay within it); builder-style. The layer returned
    /// starts afresh (its own budget full, its stats at zero); services and
    /// clones made before keep what they had.
    pub fn budget(mut self, budget: SharedBudget) -> Self {
        if let Some(shared) = &self.shared {
            self.shared = Some(Arc::new(shared.with_retries(budget)));
        }
        self
    }

    /// Names the layer: with the feature `metrics`, copies sent, won and
    /// refused are reported labelled `provider = name` (see
    /// [`telemetry`](crate::telemetry)); builder-style, starting afresh as
    /// [`budget`](Self::budget) does.
    pub fn provider(mut self, name: impl Into<Arc<str>>) -> Self {
        if let Some(shared) = &self.shared {
            self.shared = Some(Arc::new(shared.with_meter(Meter::named(name.into()))));
        }
        self
    }

    /// Copies sent, won and refused so far.
    pub fn stats(&self) -> HedgeStats {
        self.shared
            .as_ref()
            .map_or_else(HedgeStats::default, |s| HedgeStats {
                sent: s.sent.load(Ordering::Relaxed),
                won: s.won.load(Ordering::Relaxed),
                refused: s.refused.load(Ordering::Relaxed),
            })
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = HedgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgeService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`HedgeLayer`].
///
/// # Errors
///
/// The inner service's, boxed. When both the call and its copy fail, the
/// call's own error.
///
/// # Cancellation
///
/// Dropping the response future drops the call and its copy. The losing one
/// of the two is dropped when the winner answers.
#[derive(Debug, Clone)]
pub struct HedgeService<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S, Req> Service<Req> for HedgeService<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: HedgeRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::untouched(self.inner.call(request));
        };
        // A request of a type that cannot keep the mark itself (reqwest's)
        // gives its word here; the mark never reaches the server.
        let marked = request.take_repeat_mark();
        if !request.may_hedge() || !marked.unwrap_or_else(|| request.is_idempotent()) {
            return ResponseFuture::untouched(self.inner.call(request));
        }
        shared.load.deposit();
        // As the retry layer does: a copy is sent and the request kept, to be
        // copied again if the hedge is due. A body kept as it is sent (a
        // `TeeBody`) lets only its newest copy read on, so the request that
        // stays behind must never be the one sent.
        match request.try_clone() {
            Some(first) => {
                let first = self.inner.call(first);
                ResponseFuture::hedged(
                    first,
                    shared.clone(),
                    shared.delay(),
                    self.inner.clone(),
                    request,
                )
            }
            None => {
                let first = self.inner.call(request);
                if shared.measures() {
                    ResponseFuture::measured(first, shared.clone())
                } else {
                    ResponseFuture::untouched(first)
                }
            }
        }
    }
}
