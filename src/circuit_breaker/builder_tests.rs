//! The policies of [`CircuitBreaker::builder`] on tokio's paused clock: failure
//! rates, slow calls, and the open time that grows and is spread.

use std::time::Duration;

use futures_util::future::join_all;
use test_support::Capture;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::circuit_breaker::{CircuitBreakerLayer, OpenBackoff, TripPolicy};

const SECOND: Duration = Duration::from_secs(1);

fn config(timeout_secs: u64) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        timeout: Duration::from_secs(timeout_secs),
        ..CircuitBreakerConfig::default()
    }
}

fn rate(threshold: f64, minimum_calls: u32, window_secs: u64) -> TripPolicy {
    TripPolicy::FailureRate {
        threshold,
        minimum_calls,
        window: Duration::from_secs(window_secs),
    }
}

/// One call through a permit: failed or not.
fn outcome(cb: &CircuitBreaker, failed: bool) -> bool {
    match cb.try_acquire() {
        Some(permit) if failed => {
            permit.failure();
            true
        }
        Some(permit) => {
            permit.success();
            true
        }
        None => false,
    }
}

#[tokio::test(start_paused = true)]
async fn a_third_of_calls_failing_opens_a_rate_breaker_but_never_the_default() {
    let consecutive = CircuitBreaker::new(config(60));
    let rated = CircuitBreaker::builder(config(60))
        .policy(rate(0.3, 20, 10))
        .build()
        .unwrap();
    let mut refused_at = None;
    for i in 0..300 {
        let failed = i % 3 == 0;
        assert!(outcome(&consecutive, failed), "the default never opens");
        if !outcome(&rated, failed) && refused_at.is_none() {
            refused_at = Some(i);
        }
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    // The 20th call is a success (1 failure in 3): 7 of 20 is 35%, at or over
    // 30%, and the window has its minimum: the breaker opens then, and the
    // 21st call is refused.
    assert_eq!(refused_at, Some(20));
    assert_eq!(consecutive.state(), CircuitState::Closed);
    assert!(consecutive.stats().failure_count <= 1);
    assert_eq!(rated.stats().state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_window() {
    let cb = CircuitBreaker::builder(config(60))
        .policy(rate(0.5, 4, 10))
        .build()
        .unwrap();
    for _ in 0..3 {
        outcome(&cb, true);
    }
    // Ten seconds later those three are gone: three more failures are again
    // too few calls to judge.
    tokio::time::advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        outcome(&cb, true);
    }
    assert_eq!(cb.state(), CircuitState::Closed);
    outcome(&cb, true);
    assert_eq!(cb.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn calls_that_say_nothing_do_not_count_towards_a_rate() {
    let cb = CircuitBreaker::builder(config(60))
        .policy(rate(0.5, 4, 10))
        .build()
        .unwrap();
    outcome(&cb, true);
    outcome(&cb, true);
    for _ in 0..10 {
        drop(cb.try_acquire().expect("closed")); // cancelled, or a 429
    }
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "two calls are below the minimum"
    );
    outcome(&cb, false);
    outcome(&cb, true);
    assert_eq!(cb.state(), CircuitState::Open, "3 failed of 4");
}

#[tokio::test(start_paused = true)]
async fn either_opens_on_a_run_of_failures_or_on_the_rate() {
    let either = || {
        CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold: 3,
            ..config(60)
        })
        .policy(TripPolicy::either(
            TripPolicy::Consecutive,
            rate(0.5, 100, 30),
        ))
        .build()
        .unwrap()
    };
    let cb = either();
    for _ in 0..3 {
        outcome(&cb, true);
    }
    assert_eq!(cb.state(), CircuitState::Open, "three in a row");

    let cb = either();
    for i in 0..100 {
        outcome(&cb, i % 2 == 0);
    }
    assert_eq!(cb.state(), CircuitState::Open, "half of 100 calls");

    // The rate alone ignores a run below its minimum.
    let rated = CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 3,
        ..config(60)
    })
    .policy(rate(0.5, 100, 30))
    .build()
    .unwrap();
    for _ in 0..10 {
        outcome(&rated, true);
    }
    assert_eq!(rated.state(), CircuitState::Closed);
    assert_eq!(
        rated.stats().failure_count,
        10,
        "still counted, for the stats"
    );
}

/// A layer over a service that answers after `delay` (on the paused clock).
fn slow_service(
    cb: &CircuitBreaker,
    delay: Duration,
) -> impl Service<(), Response = (), Error = crate::BoxError, Future: Send> + Clone {
    CircuitBreakerLayer::new(cb.clone()).layer(tower::service_fn(move |()| async move {
        tokio::time::sleep(delay).await;
        Ok::<(), crate::BoxError>(())
    }))
}

#[tokio::test(start_paused = true)]
async fn slow_successes_open_the_circuit_at_the_slow_rate() {
    // The default policy, so slow calls are judged over 30 s with at least 100
    // calls.
    let cb = CircuitBreaker::builder(config(60))
        .slow_calls(Duration::from_secs(2), 0.5)
        .build()
        .unwrap();
    let fast = slow_service(&cb, Duration::from_secs(1));
    let slow = slow_service(&cb, Duration::from_secs(3));
    // 60 fast calls and 39 slow ones, all at once: 99 calls, below the minimum.
    let calls = (0..60)
        .map(|_| fast.clone().oneshot(()))
        .chain((0..39).map(|_| slow.clone().oneshot(())));
    assert!(join_all(calls).await.into_iter().all(|r| r.is_ok()));
    assert_eq!(cb.state(), CircuitState::Closed);
    // One more slow call: 40 of 100 is below 50%.
    slow.clone().oneshot(()).await.unwrap();
    assert_eq!(cb.state(), CircuitState::Closed);
    // Twenty more: 60 of 120.
    let calls = (0..20).map(|_| slow.clone().oneshot(()));
    assert!(join_all(calls).await.into_iter().all(|r| r.is_ok()));
    assert_eq!(cb.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_call_exactly_at_the_threshold_is_not_slow() {
    let cb = CircuitBreaker::builder(config(60))
        .policy(rate(0.9, 1, 10))
        .slow_calls(Duration::from_secs(2), 0.5)
        .build()
        .unwrap();
    slow_service(&cb, Duration::from_secs(2))
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(cb.state(), CircuitState::Closed);
    slow_service(&cb, Duration::from_millis(2001))
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(
        cb.state(),
        CircuitState::Open,
        "the second call is slow: one of two, with the failure-rate rule's minimum of one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_trip_logs_its_reason() {
    let collector = Capture::new();
    let _guard = collector.install();
    let cb = CircuitBreaker::builder(config(60))
        .policy(rate(1.0, 2, 10))
        .build()
        .unwrap();
    outcome(&cb, true);
    outcome(&cb, true);
    let opened: Vec<String> = collector
        .events()
        .into_iter()
        .filter(|e| e.message == "circuit breaker opened")
        .filter_map(|e| e.field("reason").map(str::to_owned))
        .collect();
    assert_eq!(opened, ["failure_rate"]);
}

/// Opens `cb`, then lets each recovery fail `failures` times, returning the
/// open time of each period as stats report it.
async fn failed_recoveries(cb: &CircuitBreaker, failures: usize) -> Vec<Duration> {
    cb.record_failure();
    let mut open_times = Vec::new();
    for _ in 0..=failures {
        let stats = cb.stats();
        assert_eq!(stats.state, CircuitState::Open);
        open_times.push(stats.open_time);
        // Refused until the open time has passed, and not a moment longer.
        tokio::time::advance(stats.open_time - Duration::from_millis(1)).await;
        assert!(cb.try_acquire().is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        if open_times.len() <= failures {
            cb.try_acquire().expect("a probe").failure();
        }
    }
    open_times
}

#[tokio::test(start_paused = true)]
async fn each_failed_recovery_doubles_the_open_time_up_to_max_and_a_close_resets_it() {
    let cb = CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 1,
        half_open_max_calls: 1,
        ..config(10)
    })
    .open_backoff(OpenBackoff::Exponential {
        max: Duration::from_secs(60),
        jitter: 0.0,
    })
    .build()
    .unwrap();
    assert_eq!(cb.stats().open_time, Duration::from_secs(10));
    let secs: Vec<u64> = failed_recoveries(&cb, 4)
        .await
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [10, 20, 40, 60, 60]);
    assert_eq!(cb.stats().state, CircuitState::HalfOpen);
    assert_eq!(cb.stats().open_time, Duration::from_secs(60), "the next");
    cb.try_acquire().expect("a probe").success();
    assert_eq!(cb.state(), CircuitState::Closed);
    assert_eq!(cb.stats().open_time, Duration::from_secs(10));
    let secs: Vec<u64> = failed_recoveries(&cb, 1)
        .await
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [10, 20], "the close started again from the timeout");
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_the_probes_of_breakers_that_opened_together() {
    let fleet: Vec<CircuitBreaker> = (0..50)
        .map(|_| {
            CircuitBreaker::builder(CircuitBreakerConfig {
                failure_threshold: 1,
                ..config(10)
            })
            .open_backoff(OpenBackoff::Exponential {
                max: Duration::from_secs(100),
                jitter: 0.5,
            })
            .build()
            .unwrap()
        })
        .collect();
    for cb in &fleet {
        cb.record_failure();
    }
    let open_times: Vec<Duration> = fleet.iter().map(|cb| cb.stats().open_time).collect();
    for t in &open_times {
        assert!(
            (Duration::from_secs(5)..=Duration::from_secs(10)).contains(t),
            "{t:?}"
        );
    }
    // The first probe of each breaker, second by second: spread over the five
    // seconds rather than all at once.
    let mut probes_per_second = Vec::new();
    let mut waiting: Vec<&CircuitBreaker> = fleet.iter().collect();
    tokio::time::advance(Duration::from_secs(5) - Duration::from_millis(1)).await;
    assert!(
        waiting.iter().all(|cb| cb.try_acquire().is_none()),
        "none before 50%"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    for _ in 0..6 {
        let before = waiting.len();
        waiting.retain(|cb| cb.try_acquire().is_none());
        probes_per_second.push(before - waiting.len());
        tokio::time::advance(SECOND).await;
    }
    assert!(waiting.is_empty(), "all probed by the full timeout");
    let busiest = probes_per_second.iter().max().copied().unwrap_or(0);
    assert!(
        busiest <= 25,
        "no second holds half the fleet's probes: {probes_per_second:?}"
    );
    let mut distinct = open_times.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 40, "{open_times:?}");
}

#[test]
fn build_refuses_bad_settings_naming_them() {
    let cases = [
        (
            CircuitBreaker::builder(CircuitBreakerConfig {
                failure_threshold: 0,
                ..config(1)
            }),
            "failure_threshold",
        ),
        (
            CircuitBreaker::builder(config(1)).policy(rate(1.5, 1, 10)),
            "policy",
        ),
        (
            CircuitBreaker::builder(config(1)).slow_calls(Duration::ZERO, 0.5),
            "slow_calls",
        ),
        (
            CircuitBreaker::builder(config(60)).open_backoff(OpenBackoff::Exponential {
                max: Duration::from_secs(30),
                jitter: 0.1,
            }),
            "open_backoff",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
    // The defaults build the breaker `new` makes: no rules at all.
    let plain = CircuitBreaker::builder(config(1)).build().unwrap();
    assert!(plain.shared.rules.is_none());
    assert!(format!("{plain:?}").contains("rules: None"));
}

#[tokio::test(start_paused = true)]
async fn shares_are_compared_exactly() {
    // In `f64`, 0.07 × 100 and 0.55 × 100 land just above 7 and 55.
    for (threshold, failures) in [(0.07, 7), (0.55, 55), (0.1, 10), (0.3, 30)] {
        let cb = CircuitBreaker::builder(config(60))
            .policy(rate(threshold, 100, 60))
            .build()
            .unwrap();
        for i in 0..100 {
            outcome(&cb, i < failures - 1);
        }
        assert_eq!(cb.state(), CircuitState::Closed, "{threshold}: one short");
        let cb = CircuitBreaker::builder(config(60))
            .policy(rate(threshold, 100, 60))
            .build()
            .unwrap();
        for i in 0..100 {
            outcome(&cb, i < failures);
        }
        assert_eq!(
            cb.state(),
            CircuitState::Open,
            "{threshold}: {failures} of 100"
        );
    }
}

/// A service that is not ready until `ready_at`, then answers at once.
struct ReadyLater {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Service<()> for ReadyLater {
    type Response = ();
    type Error = crate::BoxError;
    type Future = std::future::Ready<Result<(), crate::BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn the_slow_call_clock_starts_when_the_inner_service_is_ready() {
    let cb = CircuitBreaker::builder(config(60))
        .policy(rate(0.9, 1, 60))
        .slow_calls(Duration::from_secs(2), 0.5)
        .build()
        .unwrap();
    // Admitted now; the inner service (a local limit, say) is ready only in
    // five seconds, and then answers at once.
    let inner = ReadyLater {
        sleep: Box::pin(tokio::time::sleep(Duration::from_secs(5))),
    };
    CircuitBreakerLayer::new(cb.clone())
        .layer(inner)
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(cb.state(), CircuitState::Closed, "a fast call");
    slow_service(&cb, Duration::from_secs(3))
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(cb.state(), CircuitState::Open, "one slow call of two");
}

#[tokio::test(start_paused = true)]
async fn a_bare_success_that_closes_the_circuit_starts_an_empty_window() {
    let cb = CircuitBreaker::builder(CircuitBreakerConfig {
        half_open_max_calls: 1,
        ..config(1)
    })
    .policy(rate(0.5, 2, 60))
    .build()
    .unwrap();
    outcome(&cb, true);
    outcome(&cb, true);
    assert_eq!(cb.state(), CircuitState::Open);
    tokio::time::advance(SECOND).await;
    assert!(cb.can_attempt());
    cb.record_success(); // closes: the probe belongs to the half-open period
    assert_eq!(cb.state(), CircuitState::Closed);
    // Had the probe counted, one failure would make 1 of 2.
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Closed);
    cb.record_failure();
    assert_eq!(cb.state(), CircuitState::Open);
}
