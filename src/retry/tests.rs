use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder};

use test_support::{Capture, call_err, call_ok};
use tower::Layer;
use tower::retry::budget::TpsBudget;

use super::*;
use crate::classify::{HttpClassifier, Outcome};
use crate::error::{BoxError, CircuitOpen};
use crate::timeout::RequestTimeout;

type Res = http::Response<()>;

/// A service answering with the scripted statuses in order (the last one
/// repeats), each with the given headers; counts attempts.
fn scripted(
    statuses: Vec<u16>,
    headers: Vec<(&'static str, String)>,
) -> (
    impl Service<http::Request<Full<Bytes>>, Response = Res, Error = Infallible, Future = impl Send>
    + Clone
    + Send,
    Arc<AtomicU32>,
) {
    let attempts = Arc::new(AtomicU32::new(0));
    let statuses: Arc<Vec<u16>> = Arc::new(statuses);
    let headers: Arc<Vec<(&'static str, String)>> = Arc::new(headers);
    let seen = attempts.clone();
    let svc = tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        let n = seen.fetch_add(1, Ordering::SeqCst) as usize;
        let status = statuses[n.min(statuses.len() - 1)];
        let headers = headers.clone();
        async move {
            let mut res = http::Response::builder().status(status);
            for (name, value) in headers.iter() {
                res = res.header(*name, value.as_str());
            }
            Ok::<_, Infallible>(res.body(()).unwrap())
        }
    });
    (svc, attempts)
}

fn config(max_retries: u32, base_ms: u64, max_ms: u64) -> RetryConfig {
    RetryConfig {
        max_retries,
        base_delay: Duration::from_millis(base_ms),
        max_delay: Duration::from_millis(max_ms),
        jitter: Jitter::Symmetric,
        total_timeout: None,
        max_replay_bytes: 64 * 1024,
    }
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::new(Full::new(Bytes::from_static(b"{}")))
}

#[tokio::test(start_paused = true)]
async fn retries_transient_statuses_with_backoff_until_success() {
    let (inner, attempts) = scripted(vec![503, 502, 200], vec![]);
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(config(3, 1000, 10_000)).classifier(HttpClassifier))
        .service(inner);
    let start = Instant::now();
    let res = call_ok(&mut svc, request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // Two sleeps: 1 s ± 50% and 2 s ± 50%.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited <= Duration::from_millis(4500), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_and_returns_the_last_response() {
    let (inner, attempts) = scripted(vec![500, 500, 500, 503], vec![]);
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(HttpClassifier)
        .layer(inner);
    let res = call_ok(&mut svc, request()).await;
    assert_eq!(res.status(), 503, "the last attempt's response, unchanged");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_successes_are_not_retried() {
    for status in [200, 400, 404, 422] {
        let (inner, attempts) = scripted(vec![status], vec![]);
        let mut svc = RetryLayer::new(config(3, 10, 100))
            .classifier(HttpClassifier)
            .layer(inner);
        let res = call_ok(&mut svc, request()).await;
        assert_eq!(res.status(), status);
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_honoured_when_longer_than_the_backoff() {
    let (inner, attempts) = scripted(vec![429, 200], vec![("retry-after", "5".into())]);
    let mut svc = RetryLayer::new(config(3, 10, 10_000))
        .classifier(HttpClassifier)
        .layer(inner);
    let start = Instant::now();
    let res = call_ok(&mut svc, request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // The server's wait, and at most a fifth more.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(5), "{waited:?}");
    assert!(waited <= Duration::from_secs(6), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn callers_sent_away_by_one_retry_after_come_back_spread_out() {
    let start = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let (inner, _) = scripted(vec![429, 200], vec![("retry-after", "1".into())]);
            let mut svc = RetryLayer::new(config(3, 1, 10_000))
                .without_budget()
                .classifier(HttpClassifier)
                .layer(inner);
            tokio::spawn(async move {
                call_ok(&mut svc, request()).await;
                start.elapsed()
            })
        })
        .collect();
    let mut waits = Vec::new();
    for call in calls {
        waits.push(call.await.unwrap());
    }
    waits.sort();
    let (first, last) = (waits[0], waits[waits.len() - 1]);
    assert!(first >= Duration::from_secs(1), "{waits:?}");
    assert!(last <= Duration::from_millis(1200), "{waits:?}");
    // Spread over the window, not in lock-step: 40 draws from 0-200 ms.
    assert!(last - first >= Duration::from_millis(100), "{waits:?}");
    let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
    assert!(distinct.len() >= 30, "{waits:?}");
}

#[tokio::test(start_paused = true)]
async fn the_spread_never_pushes_a_retry_past_the_deadline() {
    // A Retry-After of 1 s under a 1.05 s deadline: the spread would pass it
    // about three times in four; the retry is made at 1 s instead, every time.
    for _ in 0..20 {
        let (inner, attempts) = scripted(vec![429, 200], vec![("retry-after", "1".into())]);
        let mut cfg = config(3, 1, 10_000);
        cfg.total_timeout = Some(Duration::from_millis(1050));
        let mut svc = RetryLayer::new(cfg)
            .without_budget()
            .classifier(HttpClassifier)
            .layer(inner);
        let res = call_ok(&mut svc, request()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4));
    let (inner, attempts) = scripted(vec![503, 200], vec![("retry-after", date)]);
    let mut svc = RetryLayer::new(config(3, 10, 10_000))
        .classifier(HttpClassifier)
        .layer(inner);
    let start = Instant::now();
    call_ok(&mut svc, request()).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // The date has one-second resolution.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(waited <= Duration::from_secs(5), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_returns_the_response_at_once() {
    let (inner, attempts) = scripted(vec![429, 200], vec![("retry-after", "60".into())]);
    let mut svc = RetryLayer::new(config(3, 10, 10_000))
        .classifier(HttpClassifier)
        .layer(inner);
    let start = Instant::now();
    let res = call_ok(&mut svc, request()).await;
    assert_eq!(res.status(), 429);
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries_and_can_be_turned_off() {
    // A reserve of exactly one retry, earning nothing from deposits.
    let budget: SharedBudget = Arc::new(TpsBudget::new(Duration::from_secs(1), 1, 0.0));
    let (inner, attempts) = scripted(vec![503], vec![]);
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(HttpClassifier)
        .budget(budget)
        .layer(inner);
    call_ok(&mut svc, request()).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one retry from the reserve"
    );
    call_ok(&mut svc, request()).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "no retry left");

    let (inner, attempts) = scripted(vec![503], vec![]);
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(HttpClassifier)
        .without_budget()
        .layer(inner);
    for _ in 0..3 {
        call_ok(&mut svc, request()).await;
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 12);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_never_retried_even_if_the_classifier_says_so() {
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let inner = tower::service_fn(move |_: http::Request<Full<Bytes>>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Err::<Res, BoxError>(Box::new(CircuitOpen::new())) }
    });
    let everything_fails = |_: Result<&Res, &BoxError>| Outcome::Failure { retry_after: None };
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(everything_fails)
        .layer(inner);
    let err = call_err(&mut svc, request()).await;
    assert!(err.is::<CircuitOpen>());
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_carries_the_same_request_and_retries_are_logged_in_the_span() {
    let collector = Capture::new();
    let _guard = collector.install();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let inner = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push((
            req.headers().get("x-request-id").cloned(),
            req.method().clone(),
            req.uri().clone(),
        ));
        let status = if n < 2 { 503 } else { 200 };
        async move { Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap()) }
    });
    let mut svc = ServiceBuilder::new()
        .layer(crate::request_id::RequestIdLayer::new())
        .layer(
            RetryLayer::new(config(3, 1000, 10_000))
                .classifier(HttpClassifier)
                .replay(crate::retry::Replay::Always),
        )
        .service(inner);
    let req = http::Request::post("http://example.test/embeddings")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    call_ok(&mut svc, req).await;

    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let id = bodies[0].0.clone().expect("request id header");
    let id = id.to_str().unwrap();

    let retries: Vec<_> = collector
        .events()
        .into_iter()
        .filter(|e| e.message.contains("Retrying in"))
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(
        retries[0]
            .message
            .starts_with("attempt 1/4 failed: 503 Service Unavailable. Retrying in "),
        "{}",
        retries[0].message
    );
    assert!(retries[1].message.starts_with("attempt 2/4 failed: 503"));
    for event in &retries {
        assert_eq!(event.level, tracing::Level::INFO);
        assert!(
            event.spans.contains(&format!("request_id={id}")),
            "{}",
            event.spans
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_retry_retries_only_what_retry_if_accepts() {
    #[derive(Debug, PartialEq)]
    enum SdkError {
        Throttled(u32),
        Denied,
    }
    let cfg = config(3, 100, 1000);

    // Retryable until the third call.
    let mut calls = 0;
    let result = with_retry(
        &cfg,
        "op",
        |e| matches!(e, SdkError::Throttled(_)),
        || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(SdkError::Throttled(n))
                } else {
                    Ok(n)
                }
            }
        },
    )
    .await;
    assert_eq!(result, Ok(3));

    // Not retryable: one call.
    let mut calls = 0;
    let result: Result<(), _> = with_retry(
        &cfg,
        "op",
        |e| matches!(e, SdkError::Throttled(_)),
        || {
            calls += 1;
            async { Err(SdkError::Denied) }
        },
    )
    .await;
    assert_eq!((result, calls), (Err(SdkError::Denied), 1));

    // Always retryable: 1 + max_retries calls, the last error unchanged.
    let mut calls = 0;
    let start = Instant::now();
    let result: Result<(), _> = with_retry(
        &cfg,
        "op",
        |_| true,
        || {
            calls += 1;
            let n = calls;
            async move { Err(SdkError::Throttled(n)) }
        },
    )
    .await;
    assert_eq!((result, calls), (Err(SdkError::Throttled(4)), 4));
    // Three sleeps of 100, 200, 400 ms, each ± 50%.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(350) && waited <= Duration::from_millis(1050));
}

#[test]
fn with_retry_blocking_retries_and_gives_up_like_the_async_form() {
    let cfg = RetryConfig {
        max_retries: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        jitter: Jitter::Symmetric,
        total_timeout: None,
        max_replay_bytes: 64 * 1024,
    };
    let mut calls = 0;
    let result: Result<(), u32> = with_retry_blocking(
        &cfg,
        "db insert",
        |e| *e != 0,
        || {
            calls += 1;
            Err(calls)
        },
    );
    assert_eq!(result, Err(3));
    let mut calls = 0;
    let result: Result<u32, u32> = with_retry_blocking(
        &cfg,
        "db insert",
        |_| true,
        || {
            calls += 1;
            if calls == 2 { Ok(calls) } else { Err(calls) }
        },
    );
    assert_eq!(result, Ok(2));
}

#[test]
fn request_copies_keep_method_uri_headers_extensions_and_body() {
    let mut req = http::Request::put("http://h/x?y=1")
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    req.extensions_mut()
        .insert(RequestTimeout(Duration::from_secs(3)));
    let copy = req.try_clone().expect("full bodies replay");
    assert_eq!(copy.method(), req.method());
    assert_eq!(copy.uri(), req.uri());
    assert_eq!(copy.headers(), req.headers());
    assert_eq!(
        copy.extensions().get::<RequestTimeout>(),
        Some(&RequestTimeout(Duration::from_secs(3)))
    );
}

// ===== the call as a whole, in a user's tower stack =====

/// A service that never answers; counts attempts.
fn hanging() -> (
    impl Service<http::Request<Full<Bytes>>, Response = Res, Error = Infallible, Future = impl Send>
    + Clone
    + Send,
    Arc<AtomicU32>,
) {
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let svc = tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        seen.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<Res, Infallible>>()
    });
    (svc, attempts)
}

fn get() -> http::Request<Full<Bytes>> {
    http::Request::get("http://example.test/")
        .body(Full::default())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_deadline_bounds_retry_and_timeout_layers_together() {
    let (inner, attempts) = hanging();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(config(3, 1000, 1000)).without_budget())
        .layer(crate::TimeoutLayer::new(Duration::from_secs(5)))
        .service(inner);
    let mut req = get();
    let started = Instant::now();
    req.extensions_mut().insert(crate::timeout::RequestDeadline(
        started + Duration::from_secs(8),
    ));
    let err = call_err(&mut svc, req).await;
    assert_eq!(started.elapsed(), Duration::from_secs(8));
    let elapsed = err
        .downcast_ref::<crate::timeout::Elapsed>()
        .expect("Elapsed");
    assert!(elapsed.is_deadline(), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn total_timeout_in_the_config_sets_the_deadline_of_each_call() {
    let (inner, attempts) = hanging();
    let cfg = RetryConfig {
        total_timeout: Some(Duration::from_secs(3)),
        ..config(3, 1000, 1000)
    };
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(cfg))
        .layer(crate::TimeoutLayer::new(Duration::from_secs(60)))
        .service(inner);
    let started = Instant::now();
    let err = call_err(&mut svc, get()).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    // A request's own, earlier deadline wins.
    let mut req = get();
    req.extensions_mut().insert(crate::timeout::RequestDeadline(
        Instant::now() + Duration::from_secs(1),
    ));
    let started = Instant::now();
    call_err(&mut svc, req).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_replay_policy_decides_what_a_post_may_repeat() {
    let post = || {
        http::Request::post("http://example.test/charge")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    // By default a POST answered 503 is not repeated; 429 is.
    for (status, expected) in [(503, 1), (429, 2)] {
        let (inner, attempts) = scripted(vec![status, 200], vec![]);
        let mut svc = RetryLayer::new(config(3, 10, 100))
            .classifier(HttpClassifier)
            .layer(inner);
        let res = call_ok(&mut svc, post()).await;
        assert_eq!(attempts.load(Ordering::SeqCst), expected, "{status}");
        assert_eq!(res.status(), if expected == 1 { status } else { 200 });
    }
    // Marked idempotent, or under Replay::Always, it is.
    let (inner, attempts) = scripted(vec![503, 200], vec![]);
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(HttpClassifier)
        .layer(inner);
    let mut req = post();
    req.extensions_mut().insert(Idempotent(true));
    call_ok(&mut svc, req).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let (inner, attempts) = scripted(vec![503, 200], vec![]);
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(HttpClassifier)
        .replay(Replay::Always)
        .layer(inner);
    call_ok(&mut svc, post()).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // A GET marked not idempotent is treated like a POST.
    let (inner, attempts) = scripted(vec![503, 200], vec![]);
    let mut svc = RetryLayer::new(config(3, 10, 100))
        .classifier(HttpClassifier)
        .layer(inner);
    let mut req = get();
    req.extensions_mut().insert(Idempotent(false));
    call_ok(&mut svc, req).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn with_retry_starts_no_wait_that_would_pass_total_timeout() {
    let cfg = RetryConfig {
        max_retries: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        jitter: Jitter::None,
        total_timeout: Some(Duration::from_millis(2_500)),
        ..RetryConfig::default()
    };
    let mut calls = 0;
    let started = Instant::now();
    let result: Result<(), u32> = with_retry(
        &cfg,
        "op",
        |_| true,
        || {
            calls += 1;
            let n = calls;
            async move { Err(n) }
        },
    )
    .await;
    // Fails at 0 s, waits 1 s, fails at 1 s; a 2 s wait would end at 3 s.
    assert_eq!(result, Err(2));
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    let blocking = RetryConfig {
        base_delay: Duration::from_millis(20),
        total_timeout: Some(Duration::from_millis(50)),
        ..cfg
    };
    let mut calls = 0;
    let result: Result<(), u32> = with_retry_blocking(
        &blocking,
        "op",
        |_| true,
        || {
            calls += 1;
            Err(calls)
        },
    );
    // Waits of 20 and 40 ms: the second would pass 50 ms.
    assert_eq!(result, Err(2));
}
