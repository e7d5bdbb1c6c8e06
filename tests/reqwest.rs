//! Feature `reqwest`: the whole stack over `reqwest::Client`, against loopback
//! servers that count what they were sent.
#![cfg(feature = "reqwest")]

mod support;

use std::time::Duration;

use stache_resilience::circuit_breaker::{CircuitOpen, CircuitState};
use stache_resilience::classify::HttpClassifier;
use stache_resilience::retry::{Jitter, RetryConfig};
use stache_resilience::timeout::Elapsed;
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, ServiceBuilderExt};
use support::server::ClosedPort;
use support::{Reply, Server};
use tower::{Service, ServiceBuilder, ServiceExt};

fn retries() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        jitter: Jitter::Symmetric,
        total_timeout: None,
        max_replay_bytes: 64 * 1024,
    }
}

/// RequestId -> CircuitBreaker -> Retry -> Timeout -> reqwest::Client.
fn stack(
    breaker: &CircuitBreaker,
) -> impl Service<
    reqwest::Request,
    Response = reqwest::Response,
    Error = stache_resilience::BoxError,
    Future = impl std::future::Future<Output = Result<reqwest::Response, stache_resilience::BoxError>>
             + Send,
> + Clone {
    ServiceBuilder::new()
        .request_id()
        .circuit_breaker_with(breaker.clone(), HttpClassifier)
        .resilient_retry_with(retries(), HttpClassifier)
        .attempt_timeout(Duration::from_secs(5))
        .service(reqwest::Client::new())
}

fn request(method: reqwest::Method, url: &str) -> reqwest::Request {
    let mut req = reqwest::Request::new(method, url.parse().expect("a URL"));
    *req.body_mut() = Some(reqwest::Body::from(r#"{"input":["a"]}"#));
    req
}

#[tokio::test]
async fn transient_failures_are_retried_with_one_id_and_the_breaker_counts_calls() {
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, "{}"),
    ])
    .await;
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 2,
        ..Default::default()
    });
    let mut svc = stack(&breaker);
    let url = format!("{}/v1/embeddings", server.url());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(reqwest::Method::PUT, &url))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ids: Vec<String> = server.seen().iter().map(|s| s.request_id()).collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|id| id == &ids[0] && id.len() == 8),
        "{ids:?}"
    );
    assert_eq!(breaker.stats().failure_count, 0, "one success for the call");

    // A service that stays down: each call is 4 attempts and one breaker failure.
    let down = Server::replies(vec![Reply::Status(503)]).await;
    let url = format!("{}/v1/embeddings", down.url());
    for _ in 0..2 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(request(reqwest::Method::GET, &url))
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
    }
    assert_eq!(down.hits(), 8);
    assert_eq!(breaker.state(), CircuitState::Open);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(reqwest::Method::GET, &url))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(down.hits(), 8, "refused without a request");
}

#[tokio::test]
async fn a_post_is_replayed_only_when_it_was_never_sent() {
    let breaker = CircuitBreaker::default();
    let mut svc = stack(&breaker);
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let url = format!("{}/charge", server.url());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(reqwest::Method::POST, &url))
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "not replayed after a 503");
    assert_eq!(server.hits(), 1);

    // A refused connection proves nothing was sent: replayed, 4 attempts.
    let closed = ClosedPort::new();
    let logs = support::capture_logs();
    let _guard = logs.install();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(
            reqwest::Method::POST,
            &format!("{}/charge", closed.url()),
        ))
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect),
        "{err}"
    );
    let retried = logs
        .events()
        .iter()
        .filter(|e| e.message.contains("Retrying in"))
        .count();
    assert_eq!(retried, 3);
}

#[tokio::test]
async fn the_attempt_timeout_bounds_a_server_that_never_answers() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut svc = ServiceBuilder::new()
        .attempt_timeout(Duration::from_millis(50))
        .service(reqwest::Client::new());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(reqwest::Method::GET, &server.url()))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Elapsed>().map(Elapsed::limit),
        Some(Duration::from_millis(50))
    );
}

#[tokio::test]
async fn a_post_marked_safe_to_repeat_by_header_is_replayed_and_the_mark_never_sent() {
    use stache_resilience::retry::SAFE_TO_REPEAT;

    let breaker = CircuitBreaker::default();
    let mut svc = stack(&breaker);
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let mut req = request(reqwest::Method::POST, &format!("{}/embed", server.url()));
    req.headers_mut()
        .insert(SAFE_TO_REPEAT, http::HeaderValue::from_static("true"));
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 200, "the marked POST is replayed after a 503");
    assert_eq!(server.hits(), 2);
    for seen in server.seen() {
        assert!(
            !seen.headers.contains_key(SAFE_TO_REPEAT),
            "the mark reached the server: {:?}",
            seen.headers
        );
    }

    // Marked `false`: a GET is not repeated after a 503 either.
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let mut req = request(reqwest::Method::GET, &format!("{}/embed", server.url()));
    req.headers_mut()
        .insert(SAFE_TO_REPEAT, http::HeaderValue::from_static("false"));
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(server.hits(), 1);
    assert!(!server.seen()[0].headers.contains_key(SAFE_TO_REPEAT));
}
