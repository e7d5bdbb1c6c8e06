//! [`Turn`]: one call's wait for its turn at a [`RateLimiter`], written as a
//! named future: the configured limits (in Redis, then in the process), then
//! the gate and the learned pace.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;

use super::limiter::{MAX_GATE, Permit, RateLimiter, Ticket, lock, spread};
use crate::error::RateLimited;
use crate::telemetry;

/// The Redis round trip of a fleet's reservation. Boxed: the `redis` crate's
/// futures cannot be named, and the round trip costs far more than the box.
#[cfg(feature = "redis")]
type Reserving = Pin<Box<dyn Future<Output = Result<Instant, Duration>> + Send>>;

/// One call's wait for its turn. Dropping it mid-wait leaves no trace: it
/// leaves the line of paced callers and gives back its place in it.
pub(crate) struct Turn {
    /// The limiter whose configured limits the call takes its start from.
    limiter: RateLimiter,
    /// The model's own limiter, whose gate and pace the call waits for,
    /// when it is not `limiter` (see [`RateLimiter::per_model`]).
    model: Option<RateLimiter>,
    cost: u32,
    deadline: Option<Instant>,
    arrived: Instant,
    /// The latest start: the deadline, or the limiter's longest wait.
    latest: Instant,
    waited: bool,
    step: Step,
    /// The timer of the step that sleeps; made at the first sleep.
    timer: Option<Pin<Box<Sleep>>>,
    /// The line of paced callers, while this call waits in it or holds it.
    line: Option<Line>,
    /// Whether the configured limits in the process hold a start for this
    /// call: given back if it never starts.
    reserved: bool,
}

enum Step {
    /// Reserving a start with the fleet.
    #[cfg(feature = "redis")]
    Reserve(Option<Reserving>),
    /// Waiting for the fleet's start.
    #[cfg(feature = "redis")]
    FleetStart(Instant),
    /// The configured limits in the process: a start reserved, then waited
    /// for (`None`: not reserved yet).
    Limits(Option<Instant>),
    /// Looking at the gate and the pace.
    Gate,
    /// Waiting for the gate to open.
    GateOpens(Instant),
    /// Waiting to enter the line of paced callers.
    Queued,
    /// First in line: waiting for the pace's next release.
    Paced(Option<Instant>),
    Done,
}

/// A paced caller's place: counted as waiting while it waits, the line held
/// once it is first. Dropped, it gives both back.
struct Line {
    semaphore: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
    limiter: RateLimiter,
    queued: bool,
}

impl Line {
    fn join(limiter: &RateLimiter) -> Line {
        let inner = limiter.inner();
        inner.queued.fetch_add(1, Ordering::Relaxed);
        Line {
            semaphore: PollSemaphore::new(inner.line.clone()),
            permit: None,
            limiter: limiter.clone(),
            queued: true,
        }
    }

    /// Waits to be first in line.
    fn poll_first(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.permit.is_none() {
            // The semaphore is never closed.
            self.permit = ready!(self.semaphore.poll_acquire(cx));
            self.leave_queue();
        }
        Poll::Ready(())
    }

    fn leave_queue(&mut self) {
        if std::mem::take(&mut self.queued) {
            self.limiter.inner().queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.leave_queue();
    }
}

impl Turn {
    pub(crate) fn new(limiter: RateLimiter, cost: u32, deadline: Option<Instant>) -> Turn {
        Turn::for_model(limiter, None, cost, deadline)
    }

    /// The turn of a call whose gate and pace are `model`'s, when given.
    pub(super) fn for_model(
        limiter: RateLimiter,
        model: Option<RateLimiter>,
        cost: u32,
        deadline: Option<Instant>,
    ) -> Turn {
        let inner = limiter.inner();
        let arrived = Instant::now();
        let latest = match deadline {
            Some(deadline) => deadline,
            None => {
                let wait = Duration::from_millis(inner.max_wait_ms.load(Ordering::Relaxed));
                arrived.checked_add(wait).unwrap_or(arrived + MAX_GATE)
            }
        };
        #[cfg(feature = "redis")]
        let step = match inner.fleet {
            Some(_) => Step::Reserve(None),
            None => Step::Limits(None),
        };
        #[cfg(not(feature = "redis"))]
        let step = Step::Limits(None);
        Turn {
            limiter,
            model,
            cost,
            deadline,
            arrived,
            latest,
            waited: false,
            step,
            timer: None,
            line: None,
            reserved: false,
        }
    }

    /// Refuses the call: its known `wait` (if known) is past its latest start.
    #[cold]
    fn refuse(&mut self, wait: Option<Duration>) -> RateLimited {
        self.step = Step::Done;
        self.line = None;
        self.give_back();
        let inner = self.limiter.inner();
        inner.count(&inner.refused, telemetry::RATE_LIMIT_REFUSALS);
        let allowed = self.latest.saturating_duration_since(self.arrived);
        tracing::debug!(
            wait_secs = wait.map(|w| w.as_secs_f64()),
            allowed_secs = allowed.as_secs_f64(),
            "rate limited: not waiting past the call's deadline"
        );
        let refused = RateLimited::new(wait, allowed);
        // While the provider cools down after refusing the account, the
        // refusal says so: no rate is the reason.
        let now = Instant::now();
        match lock(&inner.state).cooled.filter(|(until, _)| *until > now) {
            Some((_, kind)) => refused.for_account(kind),
            None => refused,
        }
    }

    /// The call's turn came (`ticket` from the pace, if it released it).
    fn go(&mut self, mut ticket: Ticket) -> Ticket {
        self.step = Step::Done;
        self.line = None;
        // The call starts with its tokens: its answer settles them.
        if std::mem::take(&mut self.reserved) {
            ticket.tokens = self.cost;
        }
        if self.waited {
            let inner = self.limiter.inner();
            inner.count(&inner.waited, telemetry::RATE_LIMIT_WAITS);
            // The real wait, which a retry's "Retrying in" line cannot know.
            let waited = self.arrived.elapsed().as_secs_f64();
            if waited >= 1.0 {
                tracing::info!(
                    wait_secs = waited,
                    "waited {waited:.2}s for its turn at the provider's rate limit"
                );
            } else {
                tracing::debug!(wait_secs = waited, "waited for its turn");
            }
        }
        ticket
    }

    /// Sleeps until `until`, counting the call as one that waited; ready at
    /// once if `until` has passed.
    fn sleep(&mut self, until: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if until <= Instant::now() {
            return Poll::Ready(());
        }
        self.waited = true;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if timer.deadline() != until {
            timer.as_mut().reset(until);
        }
        timer.as_mut().poll(cx)
    }

    /// The limiter whose gate and pace the call waits for.
    fn herd(&self) -> &RateLimiter {
        self.model.as_ref().unwrap_or(&self.limiter)
    }

    /// The account's gate, for a call whose gate and pace are its model's:
    /// closed by an answer without a model, or by a spent quota, it holds
    /// back every model. The step that waits for it, if it is closed.
    fn account_gate(&mut self, now: Instant) -> Result<Option<Step>, RateLimited> {
        let gate = lock(&self.limiter.inner().state).gate.filter(|g| *g > now);
        match gate {
            None => Ok(None),
            Some(gate) if gate > self.latest => {
                Err(self.refuse(Some(gate.saturating_duration_since(self.arrived))))
            }
            Some(gate) => Ok(Some(Step::GateOpens(spread(now, gate).min(self.latest)))),
        }
    }

    /// Looks at the gate and the pace, once: the step that follows.
    fn gate(&mut self) -> Result<Result<Step, Ticket>, RateLimited> {
        let now = Instant::now();
        if self.model.is_some() {
            if let Some(step) = self.account_gate(now)? {
                return Ok(Ok(step));
            }
        }
        let inner = self.herd().inner();
        let mut state = lock(&inner.state);
        if state.gate.is_some_and(|g| g <= now) {
            state.gate = None;
        }
        if state.pacer.is_on() {
            return Ok(Ok(Step::Queued));
        }
        let Some(gate) = state.gate else {
            if inner.limit.is_none() && inner.window.get().is_none() {
                inner.engaged.store(false, Ordering::Relaxed);
            }
            return Ok(Err(Ticket::default()));
        };
        drop(state);
        if gate > self.latest {
            return Err(self.refuse(Some(gate.saturating_duration_since(self.arrived))));
        }
        Ok(Ok(Step::GateOpens(spread(now, gate).min(self.latest))))
    }

    /// First in line: the pace's next release. `Ok(None)` if the pace turned
    /// off meanwhile (the call looks at the gate again).
    fn paced(&mut self) -> Result<Result<Instant, Option<Ticket>>, RateLimited> {
        let inner = self.herd().inner();
        let now = Instant::now();
        let mut state = lock(&inner.state);
        if state.gate.is_some_and(|g| g <= now) {
            state.gate = None;
        }
        let Some(release) = state.pacer.next_release() else {
            return Ok(Err(None));
        };
        let next = state.gate.map_or(release, |gate| gate.max(release));
        if next <= now {
            // Nobody else in line, and no throttling for a while: the pace is
            // no longer needed.
            if inner.queued.load(Ordering::Relaxed) == 0 && state.pacer.settle(now) {
                tracing::debug!("no throttled answer for a while: pacing off");
                return Ok(Err(None));
            }
            return Ok(Err(Some(Ticket::released(state.pacer.release(now)))));
        }
        drop(state);
        if next > self.latest {
            return Err(self.refuse(Some(next.saturating_duration_since(self.arrived))));
        }
        Ok(Ok(next))
    }

    /// The fleet's reservation, in Redis: the step after it, or the refusal.
    #[cfg(feature = "redis")]
    fn poll_fleet(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RateLimited>> {
        let Step::Reserve(reserving) = &mut self.step else {
            return Poll::Ready(Ok(()));
        };
        let future = reserving.get_or_insert_with(|| {
            let limiter = self.limiter.clone();
            let (arrived, cost, latest) = (self.arrived, self.cost, self.latest);
            Box::pin(async move {
                match &limiter.inner().fleet {
                    Some(store) => store.reserve(arrived, cost, latest).await,
                    None => Ok(arrived),
                }
            })
        });
        Poll::Ready(match ready!(future.as_mut().poll(cx)) {
            Ok(at) => {
                self.step = Step::FleetStart(at);
                Ok(())
            }
            Err(wait) => Err(self.refuse(Some(wait))),
        })
    }

    /// The configured limits in the process: a start reserved (the step
    /// after it), or the refusal.
    fn reserve(&mut self) -> Result<(), RateLimited> {
        let inner = self.limiter.inner();
        let reserved = lock(&inner.state)
            .buckets
            .as_mut()
            .map(|b| b.reserve(self.arrived, self.cost, self.latest));
        self.step = match reserved {
            None => Step::Gate,
            Some(Ok(at)) => {
                self.reserved = true;
                Step::Limits(Some(at))
            }
            Some(Err(wait)) => return Err(self.refuse(Some(wait))),
        };
        Ok(())
    }

    /// Gives back the start the configured limits hold for this call, if
    /// they hold one: the call will not start.
    fn give_back(&mut self) {
        if std::mem::take(&mut self.reserved) {
            let inner = self.limiter.inner();
            if let Some(buckets) = lock(&inner.state).buckets.as_mut() {
                buckets.give_back(self.cost);
            }
        }
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Ticket, RateLimited>> {
        loop {
            match &mut self.step {
                #[cfg(feature = "redis")]
                Step::Reserve(_) => {
                    if let Err(refused) = ready!(self.poll_fleet(cx)) {
                        return Poll::Ready(Err(refused));
                    }
                }
                #[cfg(feature = "redis")]
                Step::FleetStart(at) => {
                    let at = *at;
                    ready!(self.sleep(at, cx));
                    self.step = Step::Limits(None);
                }
                Step::Limits(None) => {
                    if let Err(refused) = self.reserve() {
                        return Poll::Ready(Err(refused));
                    }
                }
                Step::Limits(Some(at)) => {
                    let at = *at;
                    ready!(self.sleep(at, cx));
                    let inner = self.limiter.inner();
                    let begun = lock(&inner.state)
                        .buckets
                        .as_mut()
                        .map_or(Ok(()), |b| b.begin(Instant::now()));
                    self.step = match begun {
                        Ok(()) => Step::Gate,
                        Err(later) => Step::Limits(Some(later)),
                    };
                }
                Step::Gate => match self.gate() {
                    Ok(Ok(step)) => self.step = step,
                    Ok(Err(ticket)) => return Poll::Ready(Ok(self.go(ticket))),
                    Err(refused) => return Poll::Ready(Err(refused)),
                },
                Step::GateOpens(at) => {
                    let at = *at;
                    ready!(self.sleep(at, cx));
                    self.step = Step::Gate;
                }
                Step::Queued => {
                    let herd = self.model.as_ref().unwrap_or(&self.limiter);
                    let line = self.line.get_or_insert_with(|| Line::join(herd));
                    if line.poll_first(cx).is_pending() {
                        // The wait in line is bounded by the call's deadline
                        // alone: the callers before it are not this call's
                        // wait to refuse.
                        let Some(deadline) = self.deadline else {
                            return Poll::Pending;
                        };
                        ready!(self.sleep(deadline, cx));
                        return Poll::Ready(Err(self.refuse(None)));
                    }
                    self.step = Step::Paced(None);
                }
                Step::Paced(None) => match self.paced() {
                    Ok(Ok(next)) => self.step = Step::Paced(Some(next)),
                    Ok(Err(Some(ticket))) => return Poll::Ready(Ok(self.go(ticket))),
                    Ok(Err(None)) => {
                        self.line = None;
                        self.step = Step::Gate;
                    }
                    Err(refused) => return Poll::Ready(Err(refused)),
                },
                Step::Paced(Some(next)) => {
                    let next = *next;
                    ready!(self.sleep(next, cx));
                    self.step = Step::Paced(None);
                }
                Step::Done => panic!("a rate limit's turn polled after completion"),
            }
        }
    }
}

impl RateLimiter {
    /// Waits for a call's turn: `cost` tokens, to start by `deadline`. The
    /// permit reports the call's answer back with
    /// [`finish`](Permit::finish), which is how the limiter learns a pace.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] at once, before any wait, when the known wait passes
    /// `deadline` (or, without one, the longest wait); or when no turn came
    /// by then.
    pub async fn acquire(
        &self,
        cost: u32,
        deadline: Option<Instant>,
    ) -> Result<Permit, RateLimited> {
        let ticket = if self.engaged() {
            Turn::new(self.clone(), cost, deadline).await?
        } else {
            Ticket::default()
        };
        Ok(Permit::new(self.clone(), ticket))
    }
}

impl Future for Turn {
    type Output = Result<Ticket, RateLimited>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin` (the timer and the fleet's round trip are
        // boxed), so the turn is too.
        self.get_mut().step(cx)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("cost", &self.cost)
            .field("deadline", &self.deadline)
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}
