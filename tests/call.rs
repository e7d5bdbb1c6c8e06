//! The call as a whole, against loopback servers that count what they read in
//! full (and so could have acted on): one deadline per call, no replay of what
//! is not safe to repeat, and the provider's own retry signals.

mod support;

use std::time::Duration;

use serde_json::json;
use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::{HttpClient, HttpClientConfig};
use support::server::ClosedPort;
use support::{Reply, Server};
use tokio::time::Instant;

/// A config for tests: fast retries, a 5 s attempt timeout.
fn config(url: &str) -> HttpClientConfig {
    let mut c = HttpClientConfig::new(url);
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(5);
    c.default_timeout = Duration::from_secs(5);
    c
}

fn header(status: u16, name: &'static str, value: &str) -> Reply {
    Reply::Full {
        status,
        headers: vec![(name, value.to_owned())],
        body: Default::default(),
    }
}

// ===== one deadline per call =====

#[tokio::test(start_paused = true)]
async fn a_deadline_bounds_the_whole_call_not_each_attempt() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.retry_base_delay = Duration::from_secs(1);
    c.retry_max_delay = Duration::from_secs(1);
    let client = HttpClient::new(c).unwrap();

    // A health check meant to take 5 s takes 5 s, not 4 × 5 s plus backoff.
    let started = Instant::now();
    let err = client
        .get("/health")
        .timeout(Duration::from_secs(5))
        .deadline(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(err.is_timeout() && err.is_deadline(), "{err:?}");
    assert_eq!(err.to_string(), "deadline of 5s exceeded after 1 attempt");
    assert_eq!(server.hits(), 1);

    // 8 s: the first attempt times out at 5 s, the second is cut by the deadline.
    let started = Instant::now();
    let err = client
        .get("/health")
        .deadline(Duration::from_secs(8))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(8));
    assert!(err.is_deadline(), "{err:?}");
    assert_eq!(err.to_string(), "deadline of 8s exceeded after 2 attempts");
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn total_timeout_is_the_default_deadline_and_an_attempt_timeout_is_not_a_deadline() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.retry.total_timeout = Some(Duration::from_millis(7_500));
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    let err = client.get("/").await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(7_500));
    assert!(err.is_deadline(), "{err:?}");

    // Without a deadline, each attempt's timeout is just that.
    let mut c = config(&server.url());
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    let err = client.get("/").await.unwrap_err();
    assert!(err.is_timeout() && !err.is_deadline(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "request timed out after 5s (default_timeout)"
    );
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_whose_wait_would_pass_the_deadline() {
    // The server asks for 3 s; the call has 2 s left: it fails at once with the
    // answer that was actually received.
    let server = Server::replies(vec![
        header(503, "retry-after", "3"),
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = config(&server.url());
    c.retry_max_delay = Duration::from_secs(10);
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    let err = client
        .get("/")
        .deadline(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert!(!err.is_deadline());
    assert_eq!(server.hits(), 1);

    // With time enough, the same answer is waited out.
    let err = client.get("/").deadline(Duration::from_secs(4)).await;
    assert!(err.is_ok(), "{err:?}");
}

#[tokio::test]
async fn a_zero_or_huge_per_call_limit_is_refused_before_anything_is_sent() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    for err in [
        client.get("/").timeout(Duration::ZERO).await.unwrap_err(),
        client.get("/").deadline(Duration::ZERO).await.unwrap_err(),
        client.get("/").deadline(Duration::MAX).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), stache_resilience::ErrorKind::Request, "{err}");
    }
    assert_eq!(server.hits(), 0);
}

// ===== never run twice what is not safe to repeat =====

/// Calls a POST through a client whose POSTs are not idempotent, and returns
/// how many requests the server read in full.
async fn non_idempotent_post(replies: Vec<Reply>) -> (Result<(), String>, usize) {
    let server = Server::replies(replies).await;
    let mut c = config(&server.url());
    c.post_is_idempotent = false;
    c.default_timeout = Duration::from_millis(200);
    let client = HttpClient::new(c).unwrap();
    let result = client
        .post("/charge", &json!({"amount": 1}))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    (result, server.hits())
}

// On the paused clock, so that the 200 ms attempt timeout the `Hang` case needs
// cannot cut another case's attempt on a loaded machine before the server has
// read it (the clock moves only when nothing else can).
#[tokio::test(start_paused = true)]
async fn a_post_that_may_have_been_processed_is_sent_once() {
    let ok = Reply::json(200, "{}");
    // A 5xx, a close after the request was read, a timeout, a broken body.
    for first in [
        Reply::Status(503),
        Reply::Status(502),
        Reply::Drop,
        Reply::Hang,
        Reply::Break {
            status: 200,
            first: bytes::Bytes::from_static(b"{\"id\":"),
        },
    ] {
        let label = format!("{first:?}");
        let (result, processed) = non_idempotent_post(vec![first, ok.clone()]).await;
        assert!(result.is_err(), "{label}: {result:?}");
        assert_eq!(processed, 1, "{label}: executed more than once");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_the_server_provably_did_not_act_on_is_retried() {
    let ok = Reply::json(200, "{}");
    for first in [
        Reply::Status(429),
        header(503, "x-should-retry", "true"),
        header(409, "x-should-retry", "true"),
    ] {
        let label = format!("{first:?}");
        let (result, processed) = non_idempotent_post(vec![first, ok.clone()]).await;
        assert_eq!(result, Ok(()), "{label}");
        assert_eq!(processed, 2, "{label}");
    }

    // A connection never made: retried, and every attempt counted.
    let closed = ClosedPort::new();
    let mut c = config(&closed.url());
    c.post_is_idempotent = false;
    let client = HttpClient::new(c).unwrap();
    let err = client.post("/charge", &json!({})).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(client.stats().attempts, 4);
}

#[tokio::test]
async fn idempotency_follows_the_method_the_config_and_the_call() {
    let replies = || vec![Reply::Status(503), Reply::json(200, "{}")];

    // POST is idempotent by default (the original design retries it).
    let server = Server::replies(replies()).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    client.post("/embed", &json!({})).await.unwrap();
    assert_eq!(server.hits(), 2);
    // ... unless the call says otherwise.
    let server = Server::replies(replies()).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.post("/embed", &json!({})).idempotent(false).await;
    assert!(err.is_err());
    assert_eq!(server.hits(), 1);

    // With post_is_idempotent = false, a call can still opt in; PUT and DELETE
    // are idempotent by method, PATCH is not.
    let server = Server::replies(replies()).await;
    let mut c = config(&server.url());
    c.post_is_idempotent = false;
    let client = HttpClient::new(c).unwrap();
    client
        .post("/embed", &json!({}))
        .idempotent(true)
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
    for (method, retried) in [
        (http::Method::PUT, true),
        (http::Method::DELETE, true),
        (http::Method::PATCH, false),
    ] {
        let server = Server::replies(replies()).await;
        let mut c = config(&server.url());
        c.post_is_idempotent = false;
        let client = HttpClient::new(c).unwrap();
        let result = client.request(method.clone(), "/x").await;
        assert_eq!(result.is_ok(), retried, "{method}");
        assert_eq!(server.hits(), if retried { 2 } else { 1 }, "{method}");
    }
}

#[tokio::test]
async fn an_idempotency_key_is_the_same_on_every_attempt_and_new_for_every_call() {
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    c.idempotency_key = Some(http::HeaderName::from_static("idempotency-key"));
    let client = HttpClient::new(c).unwrap();
    client.post("/embed", &json!({})).await.unwrap();
    client.post("/embed", &json!({})).await.unwrap();
    client.get("/models").await.unwrap();
    let keys: Vec<Option<String>> = server
        .seen()
        .iter()
        .map(|s| {
            s.headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(keys.len(), 4);
    let first = keys[0].clone().expect("a key on the POST");
    assert_eq!(first.len(), 32);
    assert_eq!(
        keys[1].as_deref(),
        Some(first.as_str()),
        "the retry repeats the key"
    );
    assert!(
        keys[2].as_ref().is_some_and(|k| *k != first),
        "a new call, a new key"
    );
    assert_eq!(keys[3], None, "no key on a GET");
}

// ===== the provider's own retry signals =====

#[tokio::test(start_paused = true)]
async fn retry_after_ms_wins_over_retry_after() {
    let server = Server::replies(vec![
        Reply::Full {
            status: 429,
            headers: vec![
                ("retry-after", "5".into()),
                ("retry-after-ms", "200".into()),
            ],
            body: Default::default(),
        },
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = config(&server.url());
    c.retry_max_delay = Duration::from_secs(10);
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    client.get("/").await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test]
async fn x_should_retry_false_makes_any_answer_final() {
    let server = Server::replies(vec![
        header(503, "x-should-retry", "false"),
        Reply::json(200, "{}"),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.get("/").await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_429_neither_closes_a_half_open_circuit_nor_resets_the_failure_count() {
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(429),
        Reply::Status(503),
        Reply::Status(429),
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = config(&server.url());
    c.max_retries = 0;
    c.circuit_breaker_threshold = 2;
    c.circuit_breaker_half_open_max_calls = 1;
    c.circuit_breaker_timeout = Duration::from_secs(5);
    let client = HttpClient::new(c).unwrap();
    let breaker = client.circuit_breaker().clone();

    // 503, 429, 503: the 429 in between does not reset the count.
    for _ in 0..3 {
        assert!(client.get("/").await.is_err());
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    // A 429 answered to the one half-open probe: still half-open, slot freed.
    tokio::time::advance(Duration::from_secs(5)).await;
    let err = client.get("/").await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.stats().success_count, 0);
    // The next probe is admitted and its success closes the circuit.
    client.get("/").await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(server.hits(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_client_takes_its_retries_jitter_from_its_retry_options() {
    use stache_resilience::retry::Jitter;
    // Without jitter the two backoffs are exactly 100 ms and 200 ms; with
    // the default ±50% they would almost never be.
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = HttpClientConfig::new(server.url());
    c.retry_base_delay = Duration::from_millis(100);
    c.retry.jitter = Jitter::None;
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    client.get("/v1/models").await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}
