use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::*;

fn retry_after(secs: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static(secs));
    headers
}

#[tokio::test(start_paused = true)]
async fn an_untouched_limiter_is_not_engaged() {
    let limiter = RateLimiter::new();
    assert!(!limiter.engaged());
    limiter.observe(StatusCode::OK, &HeaderMap::new());
    limiter.observe(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new());
    // A 503 without a wait is an outage, for the breaker.
    limiter.observe(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new());
    assert!(!limiter.engaged());
    assert_eq!(limiter.stats(), RateLimitStats::default());
}

#[tokio::test(start_paused = true)]
async fn a_429_closes_the_gate_for_every_caller() {
    let limiter = RateLimiter::new();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("2"));
    assert!(limiter.engaged());
    let stats = limiter.stats();
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.gate_closed_for, Some(Duration::from_secs(2)));
    assert_eq!(stats.pace, Some(Duration::from_secs(2)));
    let started = Instant::now();
    let permit = limiter.acquire(0, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(permit.ticket.released.is_some(), "the pace released it");
    permit.finish(StatusCode::OK, &HeaderMap::new());
    // The next goes at the pace, halved by the acceptance.
    let before = Instant::now();
    let _ = limiter.acquire(0, None).await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_is_refused_at_once() {
    let limiter = RateLimiter::new();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("30"));
    let started = Instant::now();
    let err = limiter
        .acquire(0, Some(started + Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(err.wait(), Some(Duration::from_secs(30)));
    assert_eq!(err.allowed(), Duration::from_secs(5));
    // Without a deadline, the longest wait (10 s) bounds it.
    let err = limiter.acquire(0, None).await.unwrap_err();
    assert_eq!(err.allowed(), Duration::from_secs(10));
    assert_eq!(limiter.stats().refused, 2);
    // A longer longest wait lets it go when the gate opens.
    let limiter = limiter.with_max_wait(Duration::from_secs(60));
    let _ = limiter.acquire(0, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_in_the_headers_closes_the_gate_until_its_reset() {
    let limiter = RateLimiter::new();
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("60"));
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_static("0"),
    );
    headers.insert(
        "x-ratelimit-reset-requests",
        HeaderValue::from_static("1.5s"),
    );
    limiter.observe(StatusCode::OK, &headers);
    assert!(limiter.engaged());
    let started = Instant::now();
    let permit = limiter.acquire(0, None).await.unwrap();
    let waited = started.elapsed();
    // The reset, and at most a tenth more to spread a crowd.
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(1650),
        "{waited:?}"
    );
    assert_eq!(
        permit.ticket,
        Ticket::default(),
        "no pace without a throttled answer"
    );
    permit.finish(StatusCode::OK, &HeaderMap::new());
    // The gate is open again, and the limiter steps aside.
    let _ = limiter.acquire(0, None).await.unwrap();
    assert!(!limiter.engaged());
}

#[tokio::test(start_paused = true)]
async fn the_pace_turns_off_after_a_quiet_spell() {
    let limiter = RateLimiter::new();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("1"));
    for _ in 0..3 {
        let permit = limiter.acquire(0, None).await.unwrap();
        permit.finish(StatusCode::OK, &HeaderMap::new());
    }
    assert!(limiter.stats().pace.is_some());
    tokio::time::advance(super::super::pacer::QUIET).await;
    let permit = limiter.acquire(0, None).await.unwrap();
    assert_eq!(permit.ticket, Ticket::default());
    assert_eq!(limiter.stats().pace, None);
    assert!(!limiter.engaged());
}

#[tokio::test(start_paused = true)]
async fn paced_callers_go_in_the_order_they_came() {
    let limiter = RateLimiter::new();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("1"));
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let limiter = limiter.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let permit = limiter.acquire(0, None).await.unwrap();
            order.lock().unwrap().push(i);
            // Refused: the pace must not speed up while the order is checked.
            permit.finish(StatusCode::OK, &HeaderMap::new());
        }));
        // Each arrives after the one before.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_configured_limit_spaces_calls_and_refuses_what_cannot_fit() {
    let limiter = RateLimiter::with_limit(RateLimit::per_minute(120)).unwrap();
    assert!(limiter.engaged());
    let started = Instant::now();
    for _ in 0..4 {
        let _ = limiter.acquire(0, None).await.unwrap();
    }
    // Three gaps of 500 ms, plus 2% each (see `Buckets::begin`).
    assert_eq!(started.elapsed(), Duration::from_millis(1530));
    // Ten more would need 5 s; one whose deadline is 1 s away is refused at
    // once, and the others keep their places.
    let now = Instant::now();
    let first = limiter.acquire(0, Some(now + Duration::from_secs(1))).await;
    assert!(first.is_ok());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            limiter.acquire(0, None).await.map(|_| ())
        }));
    }
    let late = limiter
        .acquire(0, Some(Instant::now() + Duration::from_millis(100)))
        .await;
    let err = late.unwrap_err();
    assert!(
        err.wait().is_some_and(|w| w > Duration::from_millis(100)),
        "{err:?}"
    );
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[test]
fn a_bad_limit_is_refused_naming_its_field() {
    let err = RateLimiter::with_limit(RateLimit::per_minute(0)).unwrap_err();
    assert_eq!(err.field(), "rate_limit.requests_per_minute");
    let err = RateLimiter::with_limit(RateLimit::per_minute(10).burst(0)).unwrap_err();
    assert_eq!(err.field(), "rate_limit.burst");
    let none = RateLimit {
        requests_per_minute: None,
        tokens_per_minute: None,
        burst: 1,
    };
    assert_eq!(
        RateLimiter::with_limit(none).unwrap_err().field(),
        "rate_limit"
    );
}
