//! The response future of [`RetryService`](super::RetryService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::backoff::Steps;
use super::replay::{Replay, ReplayRequest};
use super::stats::Shared;
use crate::classify::{ClassifyOutcome, Outcome, is_circuit_open, is_deadline, is_rate_limited};
use crate::scope::WaitClosed;

/// What a future needs to send its request again. The service a retry goes
/// to is cloned, when a retry is decided, from the one the layer wrapped
/// ([`Shared::template`]): a call that is never retried clones none.
pub(super) struct Again<S, Req> {
    /// The request as it came, only ever copied.
    pub(super) request: Req,
    /// Where the call is in its backoff (the config is `shared`'s).
    pub(super) backoff: Steps,
    pub(super) shared: std::sync::Arc<Shared<S>>,
    pub(super) policy: Replay,
    /// The request's [`SAFE_TO_REPEAT`](super::SAFE_TO_REPEAT) word, when the
    /// request type cannot keep it itself.
    pub(super) marked: Option<bool>,
}

pin_project! {
    /// The future returned by [`RetryService`](super::RetryService).
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, S::Future, Req>,
        replay: Option<Again<S, Req>>,
        // The most retries the layer's config allows.
        max_retries: u32,
        classifier: C,
        // Retries sent so far.
        retries: u32,
        // The last answer the service gave (or its last real error), kept
        // while a retry is under way: a retry the rate limiter refuses sent
        // nothing, and the call then ends with this instead.
        answered: Option<Box<Result<S::Response, S::Error>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, Req> {
        Called { #[pin] future: F },
        // `next` is the copy the retry sends, made when it was decided; boxed,
        // so that the future a call that is never retried moves stays small.
        Sleeping { #[pin] sleep: Sleep, next: Option<Box<Req>> },
        // The backoff, then a wait for the circuit breaker above to close
        // (its attempts met the circuit opening, and it lets calls wait).
        Waiting { wait: WaitClosed, next: Option<Box<Req>> },
        // The service the retry goes to, being made ready.
        Readying { service: S, next: Option<Box<Req>> },
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(super) fn new(
        future: S::Future,
        replay: Option<Again<S, Req>>,
        max_retries: u32,
        classifier: C,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            replay,
            max_retries,
            classifier,
            retries: 0,
            answered: None,
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req> + Clone,
    S::Error: fmt::Display + 'static,
    C: ClassifyOutcome<S::Response, S::Error>,
    Req: ReplayRequest,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    let attempt = *this.retries + 1;
                    let total = this.max_retries.saturating_add(1);
                    let outcome = this.classifier.classify(result.as_ref());
                    let (pause, next) = match decide(
                        &outcome,
                        &result,
                        this.replay.as_mut(),
                        this.classifier,
                        attempt,
                        total,
                    ) {
                        Some(retry) => retry,
                        None => {
                            log_end(&outcome, &result, this.classifier, attempt, total);
                            let result = match this.answered.take() {
                                Some(answered) if refused_by_limiter(&result) => *answered,
                                _ => result,
                            };
                            return Poll::Ready(result);
                        }
                    };
                    if !refused_by_limiter(&result) {
                        *this.answered = Some(Box::new(result));
                    }
                    let next = Some(Box::new(next));
                    match pause {
                        Pause::Sleep(delay) => {
                            *this.retries += 1;
                            if let Some(replay) = this.replay.as_ref() {
                                replay.shared.stats.count_retry();
                            }
                            this.state.set(State::Sleeping {
                                sleep: tokio::time::sleep(delay),
                                next,
                            });
                        }
                        Pause::Circuit(wait) => this.state.set(State::Waiting { wait, next }),
                    }
                }
                StateProj::Waiting { wait, next } => {
                    let closed = ready!(wait.as_mut().poll(cx));
                    let next = next.take();
                    let answered = this.answered.take();
                    match answered {
                        Some(answered) if !closed => {
                            tracing::info!("the circuit breaker stayed open; not retrying");
                            return Poll::Ready(*answered);
                        }
                        answered => *this.answered = answered,
                    }
                    *this.retries += 1;
                    let replay = this
                        .replay
                        .as_ref()
                        .expect("a retry is only scheduled with a replayable request");
                    replay.shared.stats.count_retry();
                    let service = replay.shared.template.clone();
                    this.state.set(State::Readying { service, next });
                }
                StateProj::Sleeping { sleep, next } => {
                    ready!(sleep.poll(cx));
                    let next = next.take();
                    // `decide` schedules a retry only with a copy to send.
                    let replay = this
                        .replay
                        .as_ref()
                        .expect("a retry is only scheduled with a replayable request");
                    let service = replay.shared.template.clone();
                    this.state.set(State::Readying { service, next });
                }
                StateProj::Readying { service, next } => {
                    ready!(service.poll_ready(cx))?;
                    let request = next
                        .take()
                        .expect("a retry is only scheduled with a copy to send");
                    let future = service.call(*request);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

/// Why the layers above say not to retry this call here, if they do: it is a
/// circuit breaker's half-open probe (one attempt), or another provider could
/// take it and staying is pointless.
fn stop_here<T, E: 'static>(
    outcome: &Outcome,
    result: &Result<T, E>,
    attempt: u32,
) -> Option<&'static str> {
    if crate::scope::is_probe() {
        return Some(
            "the call is the circuit breaker's half-open probe, and a probe is one attempt",
        );
    }
    if crate::scope::elsewhere() {
        return staying_is_pointless(outcome, result, attempt);
    }
    None
}

/// The longest a throttled answer's wait is waited out on the same provider
/// when another provider could take the call.
const WAIT_RATHER_THAN_MOVE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why another attempt on this provider is pointless when another provider
/// could take the call, if it is: a provider that did not answer in time,
/// refused the connection or broke it is not tried again; a failed answer is
/// retried once; a throttled one is waited out only if its wait is short.
fn staying_is_pointless<T, E: 'static>(
    outcome: &Outcome,
    result: &Result<T, E>,
    attempt: u32,
) -> Option<&'static str> {
    use crate::error::ErrorKind;
    if let Err(error) = result {
        return match crate::classify::error_kind(error) {
            Some(ErrorKind::Timeout) => {
                Some("the provider did not answer in time, and another provider can take the call")
            }
            Some(ErrorKind::Connect) => {
                Some("the provider refused the connection, and another provider can take the call")
            }
            Some(ErrorKind::Transport) => {
                Some("the connection to the provider broke, and another provider can take the call")
            }
            _ => None,
        };
    }
    if outcome
        .retry_after()
        .is_some_and(|wait| wait > WAIT_RATHER_THAN_MOVE)
    {
        return Some("the provider asks for a long wait, and another provider can take the call");
    }
    (attempt >= 2).then_some("the provider failed twice, and another provider can take the call")
}

/// Whether an attempt ended as a rate limiter's refusal: nothing was sent.
fn refused_by_limiter<T, E: 'static>(result: &Result<T, E>) -> bool {
    result.as_ref().err().is_some_and(is_rate_limited)
}

/// Decides whether to retry after `attempt` (1-based); `None` ends the call.
#[allow(clippy::too_many_arguments)]
fn decide<T, E: fmt::Display + 'static, S, Req: ReplayRequest, C: ClassifyOutcome<T, E>>(
    outcome: &Outcome,
    result: &Result<T, E>,
    replay: Option<&mut Again<S, Req>>,
    classifier: &C,
    attempt: u32,
    total: u32,
) -> Option<(Pause, Req)> {
    if !outcome.is_retryable() || attempt >= total {
        return None;
    }
    if let Err(error) = result {
        // The call's time is up, or the circuit refuses: another try cannot help.
        if is_circuit_open(error) || is_deadline(error) {
            return None;
        }
    }
    if let Some(why) = stop_here(outcome, result, attempt) {
        if let Some(retry) = probe_waits(outcome, result, replay, classifier, attempt, total) {
            return Some(retry);
        }
        tracing::info!(
            attempt,
            "attempt {attempt}/{total} failed: {}. Not retrying: {why}",
            Describe(result, classifier)
        );
        return None;
    }
    let replay = replay?;
    if !may_replay(replay, classifier, result) {
        tracing::info!(
            attempt,
            "attempt {attempt}/{total} failed: {}. Not retrying: the request is not idempotent and the server may have acted on it",
            Describe(result, classifier)
        );
        return None;
    }
    let scale = classifier.backoff_scale(result.as_ref());
    let delay = wait_before_retry(outcome, replay, scale, attempt, total, || {
        Describe(result, classifier).to_string()
    })?;
    let deadline = replay.request.deadline();
    // The copy is made now, so that a body that can no longer be sent again
    // ends the call with this attempt's result rather than after a wait.
    let Some(copy) = replay.request.try_clone() else {
        replay.shared.outgrown(attempt, total);
        return None;
    };
    if let Some(budget) = &replay.shared.budget {
        if !budget.withdraw() {
            replay.shared.stats.count_budget_exhausted();
            super::budget::tell_refused();
            tracing::warn!(
                attempt,
                "attempt {attempt}/{total}: retry budget exhausted; not retrying"
            );
            return None;
        }
    }
    // A breaker above that counts attempts hears of this one when it is a
    // failure (a 429 is neutral; the last attempt is the call's outcome,
    // which it hears of itself); once they have opened its circuit, the call
    // stops here.
    if !outcome.is_breaker_failure() || crate::scope::attempt_failed() {
        tracing::info!(
            attempt,
            max_attempts = total,
            "attempt {attempt}/{total} failed: {}. Retrying in {:.2}s",
            Describe(result, classifier),
            delay.as_secs_f64()
        );
        return Some((Pause::Sleep(delay), copy));
    }
    if let Some(wait) = crate::scope::wait_closed(delay, deadline) {
        tracing::info!(
            attempt,
            "attempt {attempt}/{total} failed: {}. The circuit breaker opened: retrying once it closes",
            Describe(result, classifier)
        );
        return Some((Pause::Circuit(wait), copy));
    }
    tracing::info!(
        attempt,
        "attempt {attempt}/{total} failed: {}. Not retrying: the circuit breaker opened",
        Describe(result, classifier)
    );
    None
}

/// Whether the call may be sent again after `result` (see [`Replay`]).
fn may_replay<T, E: 'static, S, Req: ReplayRequest, C: ClassifyOutcome<T, E>>(
    replay: &Again<S, Req>,
    classifier: &C,
    result: &Result<T, E>,
) -> bool {
    replay.policy != Replay::Idempotent
        || replay
            .marked
            .unwrap_or_else(|| replay.request.is_idempotent())
        || classifier.is_unprocessed(result.as_ref())
}

/// For a half-open probe that failed, under a breaker that lets callers wait
/// for the circuit to close: the failure is told to the breaker at once (it
/// opens the circuit again), and the caller waits for the circuit to close,
/// then tries again, rather than failing. `None` in every other case: a
/// probe is one attempt.
fn probe_waits<T, E: fmt::Display + 'static, S, Req: ReplayRequest, C: ClassifyOutcome<T, E>>(
    outcome: &Outcome,
    result: &Result<T, E>,
    replay: Option<&mut Again<S, Req>>,
    classifier: &C,
    attempt: u32,
    total: u32,
) -> Option<(Pause, Req)> {
    if !crate::scope::is_probe() || !outcome.is_breaker_failure() {
        return None;
    }
    let replay = replay?;
    if !may_replay(replay, classifier, result) {
        return None;
    }
    // The backoff first, as for any retry: a provider that fails the
    // waited retry too is not asked again at once.
    let delay = replay.backoff.next_delay(&replay.shared.config);
    let wait = crate::scope::wait_closed(delay, replay.request.deadline())?;
    let copy = replay.request.try_clone()?;
    // The probe's failure reopens the circuit now, not when the call ends.
    crate::scope::attempt_failed();
    tracing::info!(
        attempt,
        "attempt {attempt}/{total} failed: {}. It was the circuit breaker's probe: retrying once the circuit closes",
        Describe(result, classifier)
    );
    Some((Pause::Circuit(wait), copy))
}

/// What comes before a retry.
enum Pause {
    /// The backoff (or the server's `Retry-After`).
    Sleep(std::time::Duration),
    /// The backoff, then the circuit breaker above closing.
    Circuit(WaitClosed),
}

/// The wait before the retry after `attempt`: the backoff (`scale` times,
/// within `max_delay`), or the server's
/// `Retry-After` spread a little; `None` if the server asks for more than
/// `max_delay`, or the wait would end past the call's deadline (`describe`
/// tells what failed, for that line).
fn wait_before_retry<S, Req: ReplayRequest>(
    outcome: &Outcome,
    replay: &mut Again<S, Req>,
    scale: u32,
    attempt: u32,
    total: u32,
    describe: impl FnOnce() -> String,
) -> Option<std::time::Duration> {
    let deadline = replay.request.deadline();
    let config = &replay.shared.config;
    let mut backoff = replay.backoff.next_delay(config);
    if scale > 1 {
        backoff = backoff
            .saturating_mul(scale)
            .min(config.max_delay.max(backoff));
    }
    let mut delay = backoff;
    if let Some(retry_after) = outcome.retry_after() {
        if retry_after > config.max_delay {
            tracing::warn!(
                attempt,
                "attempt {attempt}/{total}: server asked to retry after {:.2}s, more than max_delay {:.2}s; not retrying",
                retry_after.as_secs_f64(),
                config.max_delay.as_secs_f64()
            );
            return None;
        }
        // Callers told to wait by the same answer must not all come back in
        // the same instant: the server's wait, and up to a fifth more.
        delay = backoff.max(spread(retry_after));
        if let Some(deadline) = deadline {
            // The spread is a courtesy: a wait that fits without it still goes.
            let now = tokio::time::Instant::now();
            if now.checked_add(delay).is_none_or(|end| end >= deadline) {
                delay = backoff.max(retry_after);
            }
        }
    }
    if let Some(deadline) = deadline {
        let now = tokio::time::Instant::now();
        if now.checked_add(delay).is_none_or(|end| end >= deadline) {
            tracing::info!(
                attempt,
                "attempt {attempt}/{total} failed: {}. Not retrying: a wait of {:.2}s would end past the call's deadline",
                describe(),
                delay.as_secs_f64()
            );
            return None;
        }
    }
    Some(delay)
}

/// A server-given wait, lengthened by a random 0–20%, so that the callers one
/// `Retry-After` (or one outage) sent away do not all return at once.
fn spread(wait: std::time::Duration) -> std::time::Duration {
    let extra = wait.as_secs_f64() * 0.2 * rand::random::<f64>();
    std::time::Duration::try_from_secs_f64(extra)
        .ok()
        .and_then(|extra| wait.checked_add(extra))
        .unwrap_or(wait)
}

fn log_end<T, E: fmt::Display, C: ClassifyOutcome<T, E>>(
    outcome: &Outcome,
    result: &Result<T, E>,
    classifier: &C,
    attempt: u32,
    total: u32,
) {
    match outcome {
        Outcome::Success if attempt == 1 => tracing::debug!("succeeded on first attempt"),
        Outcome::Success => tracing::info!(attempt, "attempt {attempt}/{total} succeeded"),
        o if o.is_retryable() && attempt >= total => tracing::warn!(
            attempt,
            "attempt {attempt}/{total} failed: {}. Giving up",
            Describe(result, classifier)
        ),
        _ => tracing::debug!(
            attempt,
            "attempt {attempt}/{total} ended: {}",
            Describe(result, classifier)
        ),
    }
}

/// Formats a failed result for a log line: the error, or the classifier's
/// description of the response.
struct Describe<'a, T, E, C>(&'a Result<T, E>, &'a C);

impl<T, E: fmt::Display, C: ClassifyOutcome<T, E>> fmt::Display for Describe<'_, T, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(response) => f.write_str(&self.1.describe(response)),
            Err(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<S: Service<Req>, Req, C> fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}
