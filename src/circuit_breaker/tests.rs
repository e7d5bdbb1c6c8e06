use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Service, ServiceExt};
use tracing::Level;

use test_support::{Capture, call, call_err};

use super::*;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::error::CircuitOpen;

fn breaker(threshold: u32, timeout_secs: u64, half_open: u32) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: threshold,
        timeout: Duration::from_secs(timeout_secs),
        half_open_max_calls: half_open,
    })
}

#[test]
fn defaults_and_names_match_the_original_design() {
    let config = CircuitBreakerConfig::default();
    assert_eq!(config.failure_threshold, 15);
    assert_eq!(config.timeout, Duration::from_secs(60));
    assert_eq!(config.half_open_max_calls, 3);
    assert_eq!(CircuitState::Closed.to_string(), "closed");
    assert_eq!(CircuitState::Open.to_string(), "open");
    assert_eq!(CircuitState::HalfOpen.to_string(), "half_open");
    assert_eq!(
        CircuitOpen::new().to_string(),
        "Circuit breaker OPEN - rejecting request"
    );
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let cb = breaker(3, 60, 1);
    assert_eq!(cb.state(), CircuitState::Closed);
    cb.record_failure();
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Closed);
    assert!(cb.can_attempt());
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Open);
    assert!(!cb.can_attempt());
    let stats = cb.stats();
    assert_eq!(stats.failure_count, 3);
    assert!(stats.last_failure.is_some());
}

#[test]
fn a_success_resets_the_failure_count() {
    let cb = breaker(3, 60, 1);
    cb.record_failure();
    cb.record_failure();
    cb.record_success();
    assert_eq!(cb.stats().failure_count, 0);
    cb.record_failure();
    cb.record_failure();
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "failures must be consecutive"
    );
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_moves_to_half_open_lazily_after_the_timeout() {
    let cb = breaker(1, 60, 1);
    cb.record_failure();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(cb.state(), CircuitState::Open);
    assert!(!cb.can_attempt());
    tokio::time::advance(Duration::from_secs(1)).await;
    // Nothing moved it yet: it moves on the next look.
    assert_eq!(
        CircuitState::from_bits(cb.shared.word.load(Ordering::Relaxed)),
        CircuitState::Open
    );
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    assert!(cb.can_attempt());
    cb.record_success();
    assert_eq!(cb.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_max_calls_and_closes_after_that_many_successes() {
    let cb = breaker(1, 10, 3);
    cb.record_failure();
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(cb.can_attempt());
    assert!(cb.can_attempt());
    assert!(cb.can_attempt());
    assert!(!cb.can_attempt(), "a fourth test call must wait");
    cb.record_success();
    cb.record_success();
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    assert_eq!(cb.stats().success_count, 2);
    assert!(!cb.can_attempt(), "outcomes do not free slots mid-period");
    cb.record_success();
    let stats = cb.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!(stats.failure_count, 0);
    assert_eq!(stats.success_count, 0);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_failure_reopens_and_restarts_the_timeout() {
    let cb = breaker(2, 30, 2);
    cb.record_failure();
    cb.record_failure();
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(cb.can_attempt());
    cb.record_success();
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(
        cb.state(),
        CircuitState::Open,
        "timeout restarts on reopening"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    // The new period starts with fresh slots and no successes.
    assert_eq!(cb.stats().success_count, 0);
    assert!(cb.can_attempt());
    assert!(cb.can_attempt());
    assert!(!cb.can_attempt());
}

#[test]
fn zero_counts_are_raised_to_one_and_reported_by_validate() {
    let config = CircuitBreakerConfig {
        failure_threshold: 0,
        half_open_max_calls: 0,
        ..Default::default()
    };
    assert_eq!(
        config.validate().map_err(|e| e.field()),
        Err("failure_threshold")
    );
    let cb = CircuitBreaker::new(config);
    assert_eq!(cb.config().failure_threshold, 1);
    assert_eq!(cb.config().half_open_max_calls, 1);
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn each_transition_emits_one_event_warn_on_open_info_otherwise() {
    let collector = Capture::new();
    let _guard = collector.install();
    let cb = breaker(1, 5, 1);
    cb.record_failure(); // closed -> open
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(cb.can_attempt()); // open -> half_open
    cb.record_failure(); // half_open -> open
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(cb.state(), CircuitState::HalfOpen); // open -> half_open
    assert!(cb.can_attempt());
    cb.record_success(); // half_open -> closed
    let seen: Vec<(Level, String, String)> = collector
        .events()
        .into_iter()
        .filter(|e| e.field("to").is_some())
        .map(|e| {
            (
                e.level,
                e.field("from").unwrap_or_default().to_owned(),
                e.field("to").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        (Level::WARN, "closed", "open"),
        (Level::INFO, "open", "half_open"),
        (Level::WARN, "half_open", "open"),
        (Level::INFO, "open", "half_open"),
        (Level::INFO, "half_open", "closed"),
    ];
    let expected: Vec<(Level, String, String)> = expected
        .iter()
        .map(|(l, f, t)| (*l, f.to_string(), t.to_string()))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test(start_paused = true)]
async fn an_outcome_from_an_earlier_period_is_ignored() {
    let cb = breaker(2, 10, 1);
    let early = cb.admit().expect("closed admits");
    cb.record_failure();
    cb.record_failure(); // open
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(cb.can_attempt()); // half-open, the one slot taken
    // A success from the call admitted while closed says nothing about recovery.
    cb.settle(early, Verdict::Success);
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    assert_eq!(cb.stats().success_count, 0);
}

// ===== the layer =====

/// A service that counts how often it is polled and called, and answers with
/// the scripted results (pending forever once they run out).
#[derive(Clone)]
struct Scripted {
    polls: StdArc<AtomicUsize>,
    calls: StdArc<AtomicUsize>,
    script: StdArc<StdMutex<Vec<Result<&'static str, &'static str>>>>,
}

impl Scripted {
    fn new(script: Vec<Result<&'static str, &'static str>>) -> Self {
        Scripted {
            polls: StdArc::default(),
            calls: StdArc::default(),
            script: StdArc::new(StdMutex::new(script.into_iter().rev().collect())),
        }
    }
}

impl Service<()> for Scripted {
    type Response = &'static str;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.polls.fetch_add(1, AtomicOrdering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        self.calls.fetch_add(1, AtomicOrdering::SeqCst);
        let next = self.script.lock().unwrap().pop();
        Box::pin(async move {
            match next {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(e.into()),
                None => std::future::pending().await,
            }
        })
    }
}

use crate::error::BoxError;

#[tokio::test]
async fn the_layer_rejects_while_open_without_touching_the_inner_service() {
    let cb = breaker(2, 60, 1);
    let inner = Scripted::new(vec![Err("boom"), Err("boom")]);
    let mut svc = CircuitBreakerLayer::new(cb.clone()).layer_over(inner.clone());
    for _ in 0..2 {
        assert!(call(&mut svc, ()).await.is_err());
    }
    assert_eq!(cb.state(), CircuitState::Open);
    let (polls, calls) = (
        inner.polls.load(AtomicOrdering::SeqCst),
        inner.calls.load(AtomicOrdering::SeqCst),
    );
    for _ in 0..5 {
        let err = call_err(&mut svc, ()).await;
        assert!(err.is::<CircuitOpen>());
        assert_eq!(err.to_string(), "Circuit breaker OPEN - rejecting request");
    }
    assert_eq!(
        inner.polls.load(AtomicOrdering::SeqCst),
        polls,
        "no poll_ready while open"
    );
    assert_eq!(
        inner.calls.load(AtomicOrdering::SeqCst),
        calls,
        "no call while open"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_half_open_future_frees_its_slot_and_records_nothing() {
    let cb = breaker(1, 10, 1);
    cb.record_failure();
    tokio::time::advance(Duration::from_secs(10)).await;
    // The script is empty: the inner future never completes.
    let mut svc = CircuitBreakerLayer::new(cb.clone()).layer_over(Scripted::new(vec![]));
    let pending = svc.ready().await.unwrap().call(());
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    assert!(
        !cb.can_attempt(),
        "the only slot is held by the pending call"
    );
    drop(pending);
    let stats = cb.stats();
    assert_eq!(stats.state, CircuitState::HalfOpen);
    assert_eq!((stats.failure_count, stats.success_count), (1, 0));
    assert!(cb.can_attempt(), "the slot came back");
}

#[tokio::test(start_paused = true)]
async fn a_service_dropped_between_poll_ready_and_call_frees_its_slot() {
    let cb = breaker(1, 10, 1);
    cb.record_failure();
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut svc = CircuitBreakerLayer::new(cb.clone()).layer_over(Scripted::new(vec![]));
    svc.ready().await.unwrap();
    assert!(!cb.can_attempt());
    drop(svc);
    assert!(cb.can_attempt());
}

#[tokio::test]
async fn the_layer_counts_results_through_its_classifier() {
    let cb = breaker(2, 60, 1);
    // Everything is a success to this classifier, errors included.
    let lenient = |_: Result<&&'static str, &BoxError>| crate::classify::Outcome::Success;
    let mut svc = CircuitBreakerLayer::new(cb.clone())
        .classifier(lenient)
        .layer_over(Scripted::new(vec![Err("x"), Err("y"), Err("z")]));
    for _ in 0..3 {
        let _ = call(&mut svc, ()).await;
    }
    assert_eq!(cb.state(), CircuitState::Closed);
    // The default classifier: an Ok closes nothing and an Err counts.
    let mut svc = CircuitBreakerLayer::new(cb.clone()).layer_over(Scripted::new(vec![
        Err("x"),
        Ok("fine"),
        Err("y"),
        Err("z"),
    ]));
    for _ in 0..4 {
        let _ = call(&mut svc, ()).await;
    }
    assert_eq!(cb.state(), CircuitState::Open);
}

trait LayerOver: Sized {
    fn layer_over<S>(self, inner: S) -> <Self as tower::Layer<S>>::Service
    where
        Self: tower::Layer<S>,
    {
        tower::Layer::layer(&self, inner)
    }
}
impl<C> LayerOver for CircuitBreakerLayer<C> {}

// ===== many threads =====

#[test]
fn eight_threads_never_break_the_state_machine() {
    const HALF_OPEN: u32 = 2;
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 3,
        // Zero: an open circuit may be probed at once, so every transition
        // happens many times without a clock.
        timeout: Duration::ZERO,
        half_open_max_calls: HALF_OPEN,
    });
    let collector = Capture::new();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (cb, collector) = (cb.clone(), collector.clone());
            std::thread::spawn(move || {
                let _guard = collector.install();
                let mut seed = 0x9e37_79b9_u32.wrapping_mul(t + 1);
                for _ in 0..20_000 {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let Some(ticket) = cb.admit() else {
                        continue;
                    };
                    let verdict = match seed % 10 {
                        0..=3 => Verdict::Failure,
                        4 => Verdict::Ignore,
                        _ => Verdict::Success,
                    };
                    cb.settle(ticket, verdict);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread panicked");
    }

    // Transitions form one unbroken chain, ordered by generation.
    let mut transitions = test_support::capture::transitions(&collector.events());
    transitions.sort();
    assert!(
        transitions.len() > 10,
        "too few transitions: {}",
        transitions.len()
    );
    assert!(
        transitions.iter().any(|(_, _, to)| to == "closed"),
        "never recovered"
    );
    let mut state = "closed".to_owned();
    for (i, (generation, from, to)) in transitions.iter().enumerate() {
        assert_eq!(
            *generation,
            i as u64 + 1,
            "a transition was lost or doubled"
        );
        assert_eq!(
            *from, state,
            "transition {generation} starts from the wrong state"
        );
        let valid = matches!(
            (from.as_str(), to.as_str()),
            ("closed", "open")
                | ("open", "half_open")
                | ("half_open", "closed")
                | ("half_open", "open")
        );
        assert!(valid, "impossible transition {from} -> {to}");
        state = to.clone();
    }
    assert_eq!(cb.state().as_str(), state.as_str());
}

#[test]
fn eight_threads_never_exceed_the_half_open_limit() {
    // No call is given back here, so every admission in a period is a probe
    // that counts against the limit.
    const HALF_OPEN: u32 = 3;
    let cb = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        timeout: Duration::ZERO,
        half_open_max_calls: HALF_OPEN,
    });
    let admitted: StdArc<StdMutex<HashMap<u64, u32>>> = StdArc::default();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let (cb, admitted) = (cb.clone(), admitted.clone());
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let Some(ticket) = cb.admit() else {
                        continue;
                    };
                    if ticket.half_open() {
                        *admitted
                            .lock()
                            .unwrap()
                            .entry(ticket.generation())
                            .or_default() += 1;
                    }
                    let verdict = if (i + t) % 5 == 0 {
                        Verdict::Failure
                    } else {
                        Verdict::Success
                    };
                    cb.settle(ticket, verdict);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread panicked");
    }
    let periods = admitted.lock().unwrap();
    assert!(
        periods.len() > 5,
        "too few half-open periods: {}",
        periods.len()
    );
    for (generation, count) in periods.iter() {
        assert!(
            *count <= HALF_OPEN,
            "period {generation} admitted {count} probes (limit {HALF_OPEN})"
        );
    }
}
