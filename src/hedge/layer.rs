//! [`HedgeLayer`]: a second copy of a slow idempotent attempt, the first
//! answer kept.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Delay, Hedge};
use super::latency::Latencies;
use crate::error::BoxError;
use crate::retry::{ReplayBody, ReplayRequest, SharedBudget};

/// A request extension: never hedge this request (a stream).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoHedge;

/// Hedges sent and won; in [`ClientStats::hedge`](crate::client::ClientStats::hedge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HedgeStats {
    /// Second copies sent.
    pub sent: u64,
    /// Second copies whose answer came first (and was kept).
    pub won: u64,
}

struct Shared {
    hedge: Hedge,
    latencies: Option<Latencies>,
    budget: Option<SharedBudget>,
    calls: AtomicU64,
    sent: AtomicU64,
    won: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("hedge", &self.hedge)
            .field("budget", &self.budget.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn delay(&self) -> Option<Duration> {
        match self.hedge.delay {
            Delay::Fixed(delay) => Some(delay),
            Delay::Percentile(_) => self.latencies.as_ref()?.delay(),
        }
    }

    /// Whether one more copy stays within the load cap and the retry budget.
    fn may_send(&self) -> bool {
        let calls = self.calls.load(Ordering::Relaxed) as f64;
        let sent = self.sent.load(Ordering::Relaxed) as f64;
        if sent + 1.0 > self.hedge.max_extra_load * calls {
            return false;
        }
        self.budget.as_ref().is_none_or(|budget| budget.withdraw())
    }
}

/// Hedges the idempotent requests through it; the client's, not public.
#[derive(Debug, Clone)]
pub(crate) struct HedgeLayer {
    shared: Option<Arc<Shared>>,
}

impl HedgeLayer {
    /// Hedging by `hedge` (off for `None`), drawing on `budget` if any.
    pub(crate) fn new(hedge: Option<Hedge>, budget: Option<SharedBudget>) -> Self {
        HedgeLayer {
            shared: hedge.map(|hedge| {
                Arc::new(Shared {
                    latencies: match hedge.delay {
                        Delay::Percentile(p) => Some(Latencies::new(p)),
                        Delay::Fixed(_) => None,
                    },
                    hedge,
                    budget,
                    calls: AtomicU64::new(0),
                    sent: AtomicU64::new(0),
                    won: AtomicU64::new(0),
                })
            }),
        }
    }

    pub(crate) fn stats(&self) -> HedgeStats {
        self.shared
            .as_ref()
            .map_or_else(HedgeStats::default, |s| HedgeStats {
                sent: s.sent.load(Ordering::Relaxed),
                won: s.won.load(Ordering::Relaxed),
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
#[derive(Debug, Clone)]
pub(crate) struct HedgeService<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

type Answer<T> = Result<T, BoxError>;

pin_project! {
    /// The inner future untouched, or a race of it and its copy.
    pub(crate) struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        Untouched { #[pin] future: F },
        Hedged { future: Pin<Box<dyn Future<Output = Answer<T>> + Send>> },
    }
}

impl<F, T, E> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Answer<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Untouched { future } => future.poll(cx).map_err(Into::into),
            StateProj::Hedged { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, B, T> Service<http::Request<B>> for HedgeService<S>
where
    S: Service<http::Request<B>, Response = T> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    S::Future: Send + 'static,
    B: ReplayBody + Send + 'static,
    T: Send + 'static,
{
    type Response = T;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let untouched = |future| ResponseFuture {
            state: State::Untouched { future },
        };
        let Some(shared) = &self.shared else {
            return untouched(self.inner.call(request));
        };
        if request.extensions().get::<NoHedge>().is_some() || !request.is_idempotent() {
            return untouched(self.inner.call(request));
        }
        shared.calls.fetch_add(1, Ordering::Relaxed);
        let (Some(delay), Some(copy)) = (shared.delay(), request.try_clone()) else {
            // Percentile mode still learning: measure the call, no copy.
            let measured = shared.latencies.is_some();
            let future = self.inner.call(request);
            if !measured {
                return untouched(future);
            }
            let shared = shared.clone();
            return ResponseFuture {
                state: State::Hedged {
                    future: Box::pin(async move {
                        let started = tokio::time::Instant::now();
                        let answer = future.await.map_err(Into::into);
                        if answer.is_ok() {
                            record(&shared, started.elapsed());
                        }
                        answer
                    }),
                },
            };
        };
        let first = self.inner.call(request);
        let service = self.inner.clone();
        let shared = shared.clone();
        ResponseFuture {
            state: State::Hedged {
                future: Box::pin(race(shared, first, service, copy, delay)),
            },
        }
    }
}

fn record(shared: &Shared, latency: Duration) {
    if let Some(latencies) = &shared.latencies {
        latencies.record(latency);
    }
}

/// The first attempt, and after `delay` without its answer, a copy; the first
/// good answer wins. When one fails, the other is waited for; when both
/// fail, the first attempt's error is returned.
async fn race<S, R, T>(
    shared: Arc<Shared>,
    first: S::Future,
    mut service: S,
    copy: R,
    delay: Duration,
) -> Answer<T>
where
    S: Service<R, Response = T>,
    S::Error: Into<BoxError>,
{
    let started = tokio::time::Instant::now();
    let mut first = std::pin::pin!(first);
    let mut sleep = std::pin::pin!(tokio::time::sleep(delay));
    let early = std::future::poll_fn(|cx| {
        if let Poll::Ready(answer) = first.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await;
    let answered = |answer: Answer<T>, hedge_won: bool| {
        if answer.is_ok() {
            if hedge_won {
                shared.won.fetch_add(1, Ordering::Relaxed);
            }
            record(&shared, started.elapsed());
        }
        answer
    };
    if let Some(answer) = early {
        return answered(answer.map_err(Into::into), false);
    }
    if !shared.may_send() {
        let answer = first.await.map_err(Into::into);
        return answered(answer, false);
    }
    shared.sent.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        after_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "no answer yet: sending a hedged copy"
    );
    let second = async {
        let ready = service.ready().await.map_err(Into::into)?;
        ready.call(copy).await.map_err(Into::into)
    };
    let mut second = std::pin::pin!(second);
    let mut first_failed: Option<BoxError> = None;
    let mut second_failed = false;
    let (answer, hedge_won) = std::future::poll_fn(|cx| {
        if first_failed.is_none() {
            if let Poll::Ready(answer) = first.as_mut().poll(cx) {
                match answer.map_err(Into::into) {
                    Ok(answer) => return Poll::Ready((Ok(answer), false)),
                    Err(e) if second_failed => return Poll::Ready((Err(e), false)),
                    Err(e) => first_failed = Some(e),
                }
            }
        }
        if !second_failed {
            if let Poll::Ready(answer) = second.as_mut().poll(cx) {
                match answer {
                    Ok(answer) => return Poll::Ready((Ok(answer), true)),
                    Err(e) => match first_failed.take() {
                        // Both failed: the first attempt's error is the call's.
                        Some(first) => return Poll::Ready((Err(first), false)),
                        None => {
                            drop(e);
                            second_failed = true;
                        }
                    },
                }
            }
        }
        Poll::Pending
    })
    .await;
    answered(answer, hedge_won)
}
