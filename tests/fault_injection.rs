//! `chaos::ChaosLayer` and `HttpClientConfig::chaos` against loopback
//! servers: each fault before the request leaves (nothing sent) and in place
//! of its answer (the server acted), met by the retry layer, the replay rule
//! and the breaker as the real fault would be; and a seed that repeats a run.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use stache_resilience::chaos::{Chaos, ChaosLayer, Fault, Injected};
use stache_resilience::http::StatusCode;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{Reply, Server};
use tower::{Service, ServiceBuilder, ServiceExt};

fn config(url: &str, chaos: Chaos) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 2;
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(50);
    config.default_timeout = Duration::from_millis(500);
    config.chaos = Some(chaos);
    config
}

fn error_503() -> Fault {
    Fault::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        retry_after: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_reset_before_sending_is_retried_even_for_a_post_not_safe_to_repeat() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = HttpClient::new(config(
        &server.url(),
        Chaos::new().seed(1).before(1.0, Fault::Reset),
    ))
    .unwrap();
    let err = client
        .post("/v1/charge", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    let injected = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<Injected>())
        .copied();
    assert_eq!(injected, Some(Injected::reset(false)), "{err:?}");
    assert_eq!(server.hits(), 0, "nothing was sent");
    let stats = client.stats();
    assert_eq!(stats.retries, 2, "retried: nothing was processed");
    assert_eq!(
        stats.attempts, 3,
        "an injected fault counts as an attempt, as a real one would"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reset_after_sending_is_not_replayed_for_a_post_not_safe_to_repeat() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = HttpClient::new(config(
        &server.url(),
        Chaos::new().seed(1).on_answer(1.0, Fault::Reset),
    ))
    .unwrap();
    let err = client
        .post("/v1/charge", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert_eq!(
        server.hits(),
        1,
        "the server acted once, and was not asked again"
    );

    // The same fault on a call safe to repeat is retried.
    let err = client.get("/v1/models").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert_eq!(server.hits(), 1 + 3);
}

#[tokio::test(start_paused = true)]
async fn an_injected_503_is_retried_and_counted_by_the_breaker() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = config(&server.url(), Chaos::new().before(1.0, error_503()));
    c.max_retries = 0;
    c.circuit_breaker_threshold = 3;
    let client = HttpClient::new(c).unwrap();
    for _ in 0..3 {
        let err = client.get("/v1/models").await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        let header = err.headers().and_then(|h| h.get("x-stache-chaos"));
        assert_eq!(header.map(|v| v.as_bytes()), Some(&b"injected"[..]));
    }
    assert!(
        client
            .get("/v1/models")
            .await
            .unwrap_err()
            .is_circuit_open()
    );
    assert_eq!(server.hits(), 0);

    // With retries, a 503 asking for a wait is waited out and retried.
    let fault = Fault::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        retry_after: Some(Duration::from_secs(1)),
    };
    let mut c = config(&server.url(), Chaos::new().before(1.0, fault));
    c.retry_max_delay = Duration::from_secs(5);
    let client = HttpClient::new(c).unwrap();
    let started = tokio::time::Instant::now();
    let err = client.get("/v1/models").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(client.stats().retries, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn latency_and_timeouts_take_the_time_they_say() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let slow = Chaos::new().before(1.0, Fault::Latency(Duration::from_millis(300)));
    let client = HttpClient::new(config(&server.url(), slow)).unwrap();
    let started = tokio::time::Instant::now();
    client.get("/v1/models").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.hits(), 1);

    // A hang longer than the attempt timeout ends as the attempt's timeout.
    let hang = Chaos::new().before(
        1.0,
        Fault::Timeout {
            after: Duration::from_secs(30),
        },
    );
    let mut c = config(&server.url(), hang);
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    let started = tokio::time::Instant::now();
    let err = client.get("/v1/models").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 1, "no more requests reached the server");
}

#[tokio::test(start_paused = true)]
async fn a_seed_repeats_a_run() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let run = |seed: u64| {
        let url = server.url();
        async move {
            let chaos = Chaos::new().seed(seed).before(0.4, error_503());
            let mut c = config(&url, chaos);
            c.max_retries = 0;
            c.circuit_breaker_threshold = 1_000;
            let client = HttpClient::new(c).unwrap();
            let mut outcomes = Vec::new();
            for _ in 0..40 {
                outcomes.push(client.get("/v1/models").await.is_ok());
            }
            outcomes
        }
    };
    let first = run(9).await;
    assert_eq!(first, run(9).await);
    assert_ne!(first, run(10).await);
    let failed = first.iter().filter(|ok| !**ok).count();
    assert!((6..=26).contains(&failed), "{failed} of 40 at 40%");
}

#[tokio::test(start_paused = true)]
async fn the_layer_works_over_any_tower_service() {
    let inner = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"real"))))
    });
    let fault = Fault::Status {
        status: StatusCode::TOO_MANY_REQUESTS,
        retry_after: Some(Duration::from_secs(2)),
    };
    let layer = ChaosLayer::new(Chaos::new().seed(3).on_answer(0.5, fault)).unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service(inner);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let answer = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(Full::new(Bytes::new())))
            .await
            .unwrap();
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(answer.headers()["retry-after"], "2");
        }
        statuses.push(answer.status().as_u16());
    }
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );
    // Off: nothing is injected.
    let mut plain = ServiceBuilder::new()
        .layer(ChaosLayer::off())
        .service(tower::service_fn(
            |_req: http::Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
            },
        ));
    for _ in 0..20 {
        let answer = plain
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(Full::new(Bytes::new())))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
}

#[test]
fn bad_chaos_settings_are_refused_with_the_field() {
    let mut c = HttpClientConfig::new("http://127.0.0.1:1");
    c.chaos = Some(Chaos::new().before(1.5, Fault::Reset));
    assert_eq!(c.validate().unwrap_err().field(), "chaos.rate");
    assert!(HttpClient::new(c).is_err());
}
