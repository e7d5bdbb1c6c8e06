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

#[tokio::test(start_paused = true)]
async fn a_caller_dropped_while_in_the_line_leaves_no_trace_and_the_pace_still_turns_off() {
    let limiter = RateLimiter::new();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("1"));
    // The first caller holds the line through its wait for the pace; the
    // second waits to enter it, and is dropped there.
    let mut first = Box::pin(limiter.acquire(0, None));
    assert!(futures_poll(&mut first).is_none(), "first in line, waiting");
    let mut second = Box::pin(limiter.acquire(0, None));
    assert!(
        futures_poll(&mut second).is_none(),
        "queued behind the first"
    );
    assert_eq!(limiter.inner().queued.load(Ordering::Relaxed), 1);
    drop(second);
    assert_eq!(limiter.inner().queued.load(Ordering::Relaxed), 0);
    first
        .await
        .unwrap()
        .finish(StatusCode::OK, &HeaderMap::new());
    tokio::time::advance(super::super::pacer::QUIET).await;
    let permit = limiter.acquire(0, None).await.unwrap();
    assert_eq!(permit.ticket, Ticket::default(), "the pace is off");
    assert!(!limiter.engaged());
}

/// Polls `future` once: its output if it is ready.
fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_is_not_ready_while_the_gate_is_closed_and_asks_nothing_below() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tower::{Service, ServiceExt};

    /// Counts the readiness checks it answers.
    #[derive(Clone)]
    struct Below(Arc<AtomicUsize>);
    impl Service<http::Request<()>> for Below {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(())))
        }
    }

    let limiter = RateLimiter::new();
    let asked = Arc::new(AtomicUsize::new(0));
    let mut service = super::super::RateLimitService::new(Below(asked.clone()), limiter.clone());
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("2"));
    let started = Instant::now();
    let mut ready = Box::pin(service.ready());
    assert!(
        futures_poll(&mut ready).is_none(),
        "Pending while the gate is closed"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "nothing below was asked to hold a slot"
    );
    ready.await.unwrap();
    let waited = started.elapsed();
    // The gate, and at most a tenth of the wait to spread a crowd.
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_millis(2200),
        "{waited:?}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(limiter.stats().waited, 1);

    // A gate past the longest wait does not hold readiness: the call is
    // refused at once.
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("60"));
    let started = Instant::now();
    let err = service
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(err.is::<RateLimited>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_day_long_retry_after_closes_the_gate_for_five_minutes_at_most() {
    let limiter = RateLimiter::new();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("86400"));
    assert_eq!(
        limiter.stats().gate_closed_for,
        Some(Duration::from_secs(300))
    );
    let limiter = RateLimiter::new().with_max_gate(Duration::from_secs(60));
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after("86400"));
    assert_eq!(
        limiter.stats().gate_closed_for,
        Some(Duration::from_secs(60))
    );
    // After it, a call asks the provider again.
    tokio::time::advance(Duration::from_secs(61)).await;
    let permit = limiter.acquire(0, None).await.unwrap();
    permit.finish(StatusCode::OK, &HeaderMap::new());
}

#[tokio::test(start_paused = true)]
async fn callers_cancelled_before_their_start_give_it_back() {
    let limiter = RateLimiter::with_limit(RateLimit::per_minute(60)).unwrap();
    let first = limiter.acquire(0, None).await.unwrap();
    first.finish(StatusCode::OK, &HeaderMap::new());
    // Nine callers reserve starts 1 s to 9 s away, then give up.
    let mut waiting: Vec<_> = (0..9).map(|_| Box::pin(limiter.acquire(0, None))).collect();
    for caller in &mut waiting {
        assert!(futures_poll(caller).is_none(), "it waits for its start");
    }
    drop(waiting);
    tokio::time::advance(Duration::from_millis(1_100)).await;
    // The next caller has the room they left: it goes at once.
    let started = Instant::now();
    let permit = limiter
        .acquire(0, Some(started + Duration::from_secs(1)))
        .await
        .expect("the cancelled callers' starts were given back");
    assert_eq!(started.elapsed(), Duration::ZERO);
    permit.finish(StatusCode::OK, &HeaderMap::new());
}
