//! The core layers composed in one ServiceBuilder over a real hyper-util client
//! talking to a loopback hyper server.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use stache_resilience::circuit_breaker::{CircuitOpen, CircuitState};
use stache_resilience::classify::HttpClassifier;
use stache_resilience::retry::{Jitter, Replay, RetryConfig, RetryLayer};
use stache_resilience::timeout::{Elapsed, RequestTimeout, TimeoutLayer};
use stache_resilience::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, RequestIdLayer,
};
use support::{Reply, Server, call_err, call_ok};
use tower::{Service, ServiceBuilder};

fn fast_retries(max_retries: u32) -> RetryConfig {
    RetryConfig {
        max_retries,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        jitter: Jitter::Symmetric,
        total_timeout: None,
        max_replay_bytes: 64 * 1024,
    }
}

fn post(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("{url}/embeddings"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"input":["a"]}"#)))
        .unwrap()
}

/// RequestId -> CircuitBreaker -> Retry -> Timeout -> hyper-util client.
fn stack(
    breaker: &CircuitBreaker,
    retry: RetryConfig,
    timeout: Duration,
) -> impl Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<hyper::body::Incoming>,
    Error = stache_resilience::BoxError,
> + Clone {
    ServiceBuilder::new()
        .layer(RequestIdLayer::new().provider("test"))
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
        .layer(
            RetryLayer::new(retry)
                .classifier(HttpClassifier)
                .replay(Replay::Always),
        )
        .layer(TimeoutLayer::new(timeout))
        .service(support::hyper_client())
}

#[tokio::test]
async fn transient_503s_are_retried_with_one_request_id_per_call() {
    support::init_tracing();
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::Status(200),
        Reply::Status(200),
    ])
    .await;
    let breaker = CircuitBreaker::default();
    let mut svc = stack(&breaker, fast_retries(3), Duration::from_secs(5));

    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 200);
    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 200);

    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    let ids: Vec<String> = seen.iter().map(|s| s.request_id()).collect();
    assert_eq!(ids[0].len(), 8);
    assert!(
        ids[0] == ids[1] && ids[1] == ids[2],
        "one ID across retries: {ids:?}"
    );
    assert_ne!(ids[2], ids[3], "a new call gets a new ID");
    assert!(
        seen.iter()
            .all(|s| s.body.as_ref() == br#"{"input":["a"]}"#)
    );
    assert_eq!(breaker.stats().failure_count, 0);
}

#[tokio::test]
async fn a_dead_server_sees_every_retry_but_the_breaker_counts_one_failure_per_call() {
    let server = Server::replies(vec![Reply::Status(500)]).await;
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 2,
        ..Default::default()
    });
    let mut svc = stack(&breaker, fast_retries(3), Duration::from_secs(5));

    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 500);
    assert_eq!(server.hits(), 4, "1 + max_retries attempts");
    assert_eq!(breaker.stats().failure_count, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);

    call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(server.hits(), 8);
    assert_eq!(breaker.state(), CircuitState::Open);

    let err = call_err(&mut svc, post(&server.url())).await;
    assert!(err.is::<CircuitOpen>());
    assert_eq!(server.hits(), 8, "no attempt reaches the server while open");
}

#[tokio::test]
async fn dropped_connections_are_transport_errors_that_are_retried() {
    let server = Server::replies(vec![Reply::Drop, Reply::Status(200)]).await;
    let breaker = CircuitBreaker::default();
    let mut svc = stack(&breaker, fast_retries(3), Duration::from_secs(5));
    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 200);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_timeout_applies_per_attempt_and_a_request_can_override_it() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let breaker = CircuitBreaker::default();
    let mut svc = stack(&breaker, fast_retries(1), Duration::from_millis(30));

    let started = Instant::now();
    let err = call_err(&mut svc, post(&server.url())).await;
    assert_eq!(
        err.downcast_ref::<Elapsed>().map(Elapsed::limit),
        Some(Duration::from_millis(30))
    );
    assert_eq!(server.hits(), 2, "each attempt timed out on its own");
    assert!(started.elapsed() < Duration::from_secs(1));

    let mut req = post(&server.url());
    req.extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(60)));
    let err = call_err(&mut svc, req).await;
    assert_eq!(
        err.downcast_ref::<Elapsed>().map(Elapsed::limit),
        Some(Duration::from_millis(60))
    );
    assert_eq!(breaker.stats().failure_count, 2);
}

#[tokio::test]
async fn retry_outside_the_breaker_counts_every_attempt_and_never_retries_an_open_circuit() {
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 2,
        ..Default::default()
    });
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(fast_retries(5))
                .classifier(HttpClassifier)
                .replay(Replay::Always),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
        .service(support::hyper_client());
    let err = call_err(&mut svc, post(&server.url())).await;
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(
        server.hits(),
        2,
        "the third attempt met the open circuit and stopped"
    );
}

#[tokio::test]
async fn one_safe_to_repeat_header_marks_a_post_over_hyper_util_and_through_http_client() {
    use stache_resilience::retry::SAFE_TO_REPEAT;
    use stache_resilience::{HttpClient, HttpClientConfig};

    // Over hyper-util, with the default replay rule (idempotent requests only).
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(fast_retries(2)).classifier(HttpClassifier))
        .service(support::hyper_client());
    let mut req = post(&server.url());
    req.headers_mut()
        .insert(SAFE_TO_REPEAT, http::HeaderValue::from_static("true"));
    let res = call_ok(&mut svc, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(server.hits(), 2, "the marked POST is replayed after a 503");
    assert!(
        server
            .seen()
            .iter()
            .all(|seen| !seen.headers.contains_key(SAFE_TO_REPEAT)),
        "the mark never reaches the server"
    );

    // The same header on an HttpClient call, whose POSTs are not safe to repeat.
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, "{}"),
    ])
    .await;
    let mut config = HttpClientConfig::new(server.url());
    config.post_is_idempotent = false;
    config.retry_base_delay = Duration::from_millis(1);
    let client = HttpClient::new(config).unwrap();
    let unmarked = client.post("/x", &serde_json::json!({})).await.unwrap_err();
    assert_eq!(
        unmarked.status(),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(server.hits(), 1, "an unmarked POST is not replayed");
    client
        .post("/x", &serde_json::json!({}))
        .header(SAFE_TO_REPEAT, "true")
        .await
        .expect("the marked POST is replayed");
    assert_eq!(server.hits(), 3);
    assert!(
        server
            .seen()
            .iter()
            .all(|seen| !seen.headers.contains_key(SAFE_TO_REPEAT))
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_is_one_attempt_and_its_caller_moves_on_at_once() {
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        timeout: Duration::from_secs(10),
        half_open_max_calls: 1,
    });
    let retries = RetryConfig {
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(4),
        ..fast_retries(3)
    };
    let mut svc = stack(&breaker, retries, Duration::from_secs(30));
    // A closed circuit: the whole retry schedule, then it opens.
    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 503);
    assert_eq!(server.hits(), 4);
    assert_eq!(breaker.state(), CircuitState::Open);

    tokio::time::advance(Duration::from_secs(11)).await;
    // The probe: sent once, no backoff, and the circuit open again.
    let started = tokio::time::Instant::now();
    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 503);
    assert_eq!(server.hits(), 5, "the probe was one attempt");
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "its caller waited for no backoff"
    );
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(!stache_resilience::circuit_breaker::is_probe());
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_counts_attempts_opens_within_one_calls_retries() {
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let config = CircuitBreakerConfig {
        failure_threshold: 3,
        timeout: Duration::from_secs(60),
        half_open_max_calls: 1,
    };
    let retries = RetryConfig {
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(4),
        ..fast_retries(5)
    };
    let counting = CircuitBreaker::builder(config)
        .count_attempts(true)
        .build()
        .unwrap();
    let mut svc = stack(&counting, retries, Duration::from_secs(30));
    let res = call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        server.hits(),
        3,
        "the third failed attempt opened the circuit, and the call stopped there"
    );
    assert_eq!(counting.state(), CircuitState::Open);

    // The original rule: one outcome per call, after its whole schedule.
    let calls = CircuitBreaker::new(config);
    let mut svc = stack(&calls, retries, Duration::from_secs(30));
    call_ok(&mut svc, post(&server.url())).await;
    assert_eq!(server.hits(), 3 + 6);
    assert_eq!(calls.state(), CircuitState::Closed);
}
