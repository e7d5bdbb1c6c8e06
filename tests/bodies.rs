//! The stack `RequestId -> CircuitBreaker -> Retry -> Timeout` over clients
//! whose request bodies cannot be copied: a hyper-util client with `BoxBody`
//! bodies, a proxy forwarding hyper's `Incoming`, and a `tower::service_fn`;
//! each against a scripted loopback server that counts what it was sent.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use stache_resilience::circuit_breaker::{CircuitOpen, CircuitState};
use stache_resilience::classify::HttpClassifier;
use stache_resilience::retry::{Jitter, RetryConfig};
use stache_resilience::{BoxError, CircuitBreaker, CircuitBreakerConfig, ServiceBuilderExt};
use support::{Loopback, Reply, Server, TestBody, call_err, call_ok, http1};
use tower::{Service, ServiceBuilder, ServiceExt};

const BODY: &[u8] = br#"{"input":["a","b"]}"#;

fn retries(max_replay_bytes: usize) -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        jitter: Jitter::Symmetric,
        max_replay_bytes,
        ..RetryConfig::default()
    }
}

fn breaker(threshold: u32) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: threshold,
        ..CircuitBreakerConfig::default()
    })
}

/// The whole stack over `$inner`.
macro_rules! stack {
    ($inner:expr, $breaker:expr, $max_replay_bytes:expr) => {
        ServiceBuilder::new()
            .request_id()
            .circuit_breaker_with($breaker.clone(), HttpClassifier)
            .resilient_retry_with(retries($max_replay_bytes), HttpClassifier)
            .attempt_timeout(Duration::from_secs(5))
            .service($inner)
    };
}

/// Every attempt the server saw carried the whole body and the call's one ID.
fn assert_whole_and_one_id(server: &Server, attempts: usize) {
    let seen = server.seen();
    assert_eq!(seen.len(), attempts);
    let id = seen[0].request_id();
    assert_eq!(id.len(), 8, "an ID was sent");
    for attempt in &seen {
        assert_eq!(attempt.body.as_ref(), BODY, "the whole body, every attempt");
        assert_eq!(attempt.request_id(), id, "one ID on every attempt");
    }
}

type Boxed = BoxBody<Bytes, std::io::Error>;

fn boxed(body: Bytes) -> Boxed {
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// A body in chunks, with no length known in advance.
fn chunked() -> Boxed {
    let (a, b) = BODY.split_at(7);
    TestBody::chunks(
        vec![Bytes::from_static(a), Bytes::from_static(b)],
        Duration::ZERO,
    )
    .boxed()
}

#[tokio::test]
async fn a_hyper_util_client_with_boxed_bodies_retries_the_whole_body() {
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::Status(200),
    ])
    .await;
    let breaker = breaker(5);
    let mut svc = stack!(support::hyper_client::<Boxed>(), breaker, 64 * 1024);
    let req = http::Request::put(format!("{}/v1/items", server.url()))
        .body(chunked())
        .unwrap();
    let res = call_ok(&mut svc, req).await;
    assert_eq!(res.status(), 200);
    assert_whole_and_one_id(&server, 3);
    assert_eq!(breaker.stats().failure_count, 0);
}

#[tokio::test]
async fn a_down_service_behind_boxed_bodies_opens_the_breaker() {
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let breaker = breaker(2);
    let mut svc = stack!(support::hyper_client::<Boxed>(), breaker, 64 * 1024);
    for _ in 0..2 {
        let body = boxed(Bytes::from_static(BODY));
        let req = http::Request::put(format!("{}/v1/items", server.url()))
            .body(body)
            .unwrap();
        assert_eq!(call_ok(&mut svc, req).await.status(), 503);
    }
    assert_eq!(server.hits(), 8, "2 calls of 4 attempts");
    assert_eq!(breaker.state(), CircuitState::Open);
    let req = http::Request::put(format!("{}/v1/items", server.url()))
        .body(chunked())
        .unwrap();
    assert!(call_err(&mut svc, req).await.is::<CircuitOpen>());
    assert_eq!(server.hits(), 8);
}

/// A proxy: a loopback server that forwards the `Incoming` body of each request
/// it receives through `stack` to `upstream`, and answers with its status.
async fn proxy(upstream: String, breaker: CircuitBreaker, max_replay_bytes: usize) -> Loopback {
    let client = support::hyper_client();
    let svc = stack!(client, breaker, max_replay_bytes);
    Loopback::start(move |stream| {
        let svc = svc.clone();
        let upstream = upstream.clone();
        async move {
            let forward = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let mut svc = svc.clone();
                let uri = format!("{upstream}{}", req.uri().path());
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.uri = uri.parse().unwrap();
                    let req = http::Request::from_parts(parts, body);
                    let status = match ServiceExt::<http::Request<Incoming>>::ready(&mut svc).await
                    {
                        Ok(svc) => match svc.call(req).await {
                            Ok(res) => res.status(),
                            Err(_) => http::StatusCode::BAD_GATEWAY,
                        },
                        Err(_) => http::StatusCode::BAD_GATEWAY,
                    };
                    let mut res = http::Response::new(Full::new(Bytes::new()));
                    *res.status_mut() = status;
                    Ok::<_, Infallible>(res)
                }
            });
            http1(stream, forward).await;
        }
    })
    .await
}

async fn send_to(proxy: &Loopback, body: Bytes) -> http::StatusCode {
    let client = support::hyper_client::<Full<Bytes>>();
    let req = http::Request::put(format!("{}/v1/items", proxy.url()))
        .body(Full::new(body))
        .unwrap();
    client.request(req).await.unwrap().status()
}

#[tokio::test]
async fn a_proxy_forwarding_incoming_bodies_retries_them_whole() {
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(502),
        Reply::Status(200),
    ])
    .await;
    let healthy = breaker(5);
    let front = proxy(server.url(), healthy.clone(), 64 * 1024).await;
    assert_eq!(send_to(&front, Bytes::from_static(BODY)).await, 200);
    assert_whole_and_one_id(&server, 3);
    assert_eq!(healthy.stats().failure_count, 0);

    // Down upstream: two calls of four attempts open the circuit, and the
    // third is refused before it reaches the upstream.
    let down = Server::replies(vec![Reply::Status(503)]).await;
    let breaker = breaker(2);
    let front = proxy(down.url(), breaker.clone(), 64 * 1024).await;
    for _ in 0..2 {
        assert_eq!(send_to(&front, Bytes::from_static(BODY)).await, 503);
    }
    assert_eq!(down.hits(), 8);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        send_to(&front, Bytes::from_static(BODY)).await,
        502,
        "refused by the open circuit"
    );
    assert_eq!(down.hits(), 8);
}

#[tokio::test]
async fn an_incoming_body_over_max_replay_bytes_is_forwarded_once_and_said_so() {
    let logs = support::capture_logs();
    let _guard = logs.install();
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let front = proxy(server.url(), breaker(5), 1024).await;
    let big = Bytes::from(vec![b'x'; 4096]);
    assert_eq!(send_to(&front, big.clone()).await, 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "too big to keep: sent once");
    assert_eq!(seen[0].body, big, "and sent whole");
    let warned = logs
        .events()
        .iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.contains("max_replay_bytes"))
        .count();
    assert_eq!(warned, 1);
}

#[tokio::test]
async fn a_service_fn_with_injected_failures_sees_each_attempt_with_one_id() {
    let attempts = Arc::new(AtomicU32::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (attempts.clone(), ids.clone());
    let inner = tower::service_fn(move |req: http::Request<Boxed>| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        async move {
            let id = req.headers().get("x-request-id").cloned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push((id, body));
            // Two failures injected: a refused connection, then a 503.
            match n {
                0 => Err::<http::Response<()>, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
                1 => Ok(http::Response::builder().status(503).body(()).unwrap()),
                _ => Ok(http::Response::new(())),
            }
        }
    });
    let breaker = breaker(5);
    let mut svc = stack!(inner, breaker, 64 * 1024);
    let res = call_ok(
        &mut svc,
        http::Request::put("/v1/items").body(chunked()).unwrap(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let ids = ids.lock().unwrap();
    let first = ids[0].0.clone().expect("an ID");
    for (id, body) in ids.iter() {
        assert_eq!(id.as_ref(), Some(&first), "one ID on every attempt");
        assert_eq!(body.as_ref(), BODY);
    }
    assert_eq!(breaker.stats().failure_count, 0);
}
