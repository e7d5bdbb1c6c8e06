//! [`ChaosLayer`] and [`ChaosService`]: the faults of a [`Chaos`], drawn per
//! request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Chaos, Fault, Injection};
use crate::error::{BoxError, ConfigError, Injected};

/// A validated [`Chaos`] and its draws, shared by every clone.
#[derive(Debug)]
struct Plan {
    injections: Vec<Injection>,
    seed: u64,
    draws: AtomicU64,
}

impl Plan {
    /// The fault of the next request, if it meets one.
    fn draw(&self) -> Option<Injection> {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let roll = unit(splitmix64(self.seed ^ splitmix64(n)));
        let mut upto = 0.0;
        for injection in &self.injections {
            upto += injection.rate;
            if roll < upto {
                return Some(*injection);
            }
        }
        None
    }
}

/// SplitMix64's output function: a well-spread 64-bit value from any other.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value in `[0, 1)` from 53 of the bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Injects the faults of a [`Chaos`] into a stack of `http` requests; see the
/// [module documentation](super). Clones share one sequence of draws.
#[derive(Debug, Clone)]
pub struct ChaosLayer {
    plan: Option<Arc<Plan>>,
}

impl ChaosLayer {
    /// A layer injecting `chaos`'s faults.
    ///
    /// # Errors
    ///
    /// The rule `chaos` breaks ([`Chaos::validate`]).
    pub fn new(chaos: Chaos) -> Result<Self, ConfigError> {
        chaos.validate()?;
        let plan = (!chaos.injections.is_empty()).then(|| {
            Arc::new(Plan {
                injections: chaos.injections,
                seed: chaos.seed.unwrap_or_else(rand::random),
                draws: AtomicU64::new(0),
            })
        });
        Ok(ChaosLayer { plan })
    }

    /// A layer that injects nothing: every request goes through untouched.
    pub fn off() -> Self {
        ChaosLayer { plan: None }
    }
}

impl<S> Layer<S> for ChaosLayer {
    type Service = ChaosService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService {
            inner,
            plan: self.plan.clone(),
        }
    }
}

/// The service of a [`ChaosLayer`].
#[derive(Debug, Clone)]
pub struct ChaosService<S> {
    inner: S,
    plan: Option<Arc<Plan>>,
}

type Answer<R> = Result<http::Response<R>, BoxError>;

pin_project! {
    /// The future of a [`ChaosService`]: the inner service's, untouched, or
    /// the fault drawn for the request.
    pub struct ResponseFuture<F, R> {
        #[pin]
        state: State<F, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Untouched { #[pin] future: F },
        // Boxed: a request that meets no fault (the rule, and every request
        // when chaos is off) carries none of a fault's weight through the
        // futures of the layers above.
        Faulty { faulty: Pin<Box<Faulty<F, R>>> },
    }
}

pin_project! {
    #[project = FaultyProj]
    enum Faulty<F, R> {
        // Latency before sending: the inner future (lazy, as hyper's is) is
        // first polled after the sleep, which starts at the first poll.
        Delaying { #[pin] sleep: Option<Sleep>, delay: Duration, future: Option<F> },
        // Latency on the answer: the answer, then the sleep.
        Answering { #[pin] future: F, delay: Duration },
        Holding { #[pin] sleep: Sleep, answer: Option<Answer<R>> },
        // A fault on the answer: the service acts on the request, and its
        // answer is lost.
        Losing { #[pin] future: F, fault: Fault },
        // An injected timeout: nothing comes until it fires (from the first
        // poll on).
        TimingOut { #[pin] sleep: Option<Sleep>, after: Duration, sent: bool },
        Failed { answer: Option<Answer<R>> },
    }
}

/// What a fault's state leaves: the call's answer, or the inner future to run
/// as it is (after an injected latency).
enum Step<F, R> {
    Answer(Answer<R>),
    Run(F),
}

impl<F, R: Default> ResponseFuture<F, R> {
    fn untouched(future: F) -> Self {
        ResponseFuture {
            state: State::Untouched { future },
        }
    }

    fn faulty(faulty: Faulty<F, R>) -> Self {
        ResponseFuture {
            state: State::Faulty {
                faulty: Box::pin(faulty),
            },
        }
    }
}

impl<F, R: Default> Faulty<F, R> {
    /// The state a fault that is not a latency starts in, once the request
    /// was (`sent`) or was not sent.
    fn failing(fault: Fault, sent: bool) -> Self {
        match fault {
            Fault::Timeout { after } => Faulty::TimingOut {
                sleep: None,
                after,
                sent,
            },
            fault => Faulty::Failed {
                answer: Some(fail(fault, sent)),
            },
        }
    }
}

impl<F, R, E> Faulty<F, R>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Into<BoxError>,
    R: Default,
{
    fn poll_step(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Step<F, R>> {
        loop {
            let next = match self.as_mut().project() {
                FaultyProj::Delaying {
                    mut sleep,
                    delay,
                    future,
                } => {
                    ready!(poll_started_late(sleep.as_mut(), *delay, cx));
                    return Poll::Ready(match future.take() {
                        Some(future) => Step::Run(future),
                        None => Step::Answer(Err(polled_after_completion())),
                    });
                }
                FaultyProj::Answering { future, delay } => {
                    let answer = ready!(future.poll(cx)).map_err(Into::into);
                    Faulty::Holding {
                        sleep: tokio::time::sleep(*delay),
                        answer: Some(answer),
                    }
                }
                FaultyProj::Holding { sleep, answer } => {
                    ready!(sleep.poll(cx));
                    return Poll::Ready(Step::Answer(
                        answer
                            .take()
                            .unwrap_or_else(|| Err(polled_after_completion())),
                    ));
                }
                FaultyProj::Losing { future, fault } => {
                    drop(ready!(future.poll(cx)));
                    Faulty::failing(*fault, true)
                }
                FaultyProj::TimingOut {
                    mut sleep,
                    after,
                    sent,
                } => {
                    ready!(poll_started_late(sleep.as_mut(), *after, cx));
                    return Poll::Ready(Step::Answer(Err(Box::new(Injected::timeout(*sent)))));
                }
                FaultyProj::Failed { answer } => {
                    return Poll::Ready(Step::Answer(
                        answer
                            .take()
                            .unwrap_or_else(|| Err(polled_after_completion())),
                    ));
                }
            };
            self.set(next);
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Into<BoxError>,
    R: Default,
{
    type Output = Answer<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let future = match state.as_mut().project() {
                StateProj::Untouched { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Faulty { faulty } => match ready!(faulty.as_mut().poll_step(cx)) {
                    Step::Answer(answer) => return Poll::Ready(answer),
                    Step::Run(future) => future,
                },
            };
            state.set(State::Untouched { future });
        }
    }
}

/// Polls a sleep of `delay` that starts at its first poll.
fn poll_started_late(
    mut sleep: Pin<&mut Option<Sleep>>,
    delay: Duration,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if sleep.is_none() {
        sleep.set(Some(tokio::time::sleep(delay)));
    }
    match sleep.as_pin_mut() {
        Some(sleep) => sleep.poll(cx),
        None => Poll::Ready(()),
    }
}

/// The error of a chaos future polled again after its end.
fn polled_after_completion() -> BoxError {
    "`chaos::ResponseFuture` polled after completion".into()
}

impl<S, B, R> Service<http::Request<B>> for ChaosService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Into<BoxError>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let injection = match &self.plan {
            Some(plan) => plan.draw(),
            None => None,
        };
        let Some(injection) = injection else {
            return ResponseFuture::untouched(self.inner.call(request));
        };
        tracing::debug!(
            fault = ?injection.fault,
            on_answer = injection.on_answer,
            "chaos: injecting a fault"
        );
        ResponseFuture::faulty(match injection.fault {
            Fault::Latency(delay) if injection.on_answer => Faulty::Answering {
                future: self.inner.call(request),
                delay,
            },
            Fault::Latency(delay) => Faulty::Delaying {
                sleep: None,
                delay,
                future: Some(self.inner.call(request)),
            },
            fault if injection.on_answer => Faulty::Losing {
                future: self.inner.call(request),
                fault,
            },
            fault => Faulty::failing(fault, false),
        })
    }
}

/// The answer or error a fault stands for (an injected timeout's, once it
/// fired).
fn fail<R: Default>(fault: Fault, sent: bool) -> Answer<R> {
    match fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            let mut answer = http::Response::new(R::default());
            *answer.status_mut() = status;
            if let Some(wait) = retry_after {
                answer
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
            }
            answer
                .headers_mut()
                .insert("x-stache-chaos", HeaderValue::from_static("injected"));
            Ok(answer)
        }
        Fault::Timeout { .. } => Err(Box::new(Injected::timeout(sent))),
        Fault::Reset | Fault::Latency(_) => Err(Box::new(Injected::reset(sent))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults_at_the_configured_rate() {
        let chaos = Chaos::new().seed(42).before(0.3, Fault::Reset);
        let draws = |chaos: Chaos| {
            let layer = ChaosLayer::new(chaos).unwrap();
            let plan = layer.plan.unwrap();
            (0..10_000)
                .map(|_| plan.draw().is_some())
                .collect::<Vec<_>>()
        };
        let first = draws(chaos.clone());
        assert_eq!(first, draws(chaos), "a seed repeats its run");
        let hits = first.iter().filter(|hit| **hit).count();
        assert!((2_800..3_200).contains(&hits), "{hits} of 10,000 at 30%");
        let other = draws(Chaos::new().seed(43).before(0.3, Fault::Reset));
        assert_ne!(first, other);
    }

    #[test]
    fn rates_are_checked() {
        let too_much = Chaos::new()
            .before(0.7, Fault::Reset)
            .on_answer(0.4, Fault::Reset);
        assert_eq!(too_much.validate().unwrap_err().field(), "chaos.rate");
        let negative = Chaos::new().before(-0.1, Fault::Reset);
        assert_eq!(ChaosLayer::new(negative).unwrap_err().field(), "chaos.rate");
        let nan = Chaos::new().before(f64::NAN, Fault::Reset);
        assert!(nan.validate().is_err());
        let ok_status = Fault::Status {
            status: http::StatusCode::OK,
            retry_after: None,
        };
        let err = Chaos::new().before(0.1, ok_status).validate().unwrap_err();
        assert_eq!(err.field(), "chaos.status");
    }
}
