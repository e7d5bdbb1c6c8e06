//! `HttpClientConfig::hedge` against loopback servers: a slow idempotent
//! call gets a second copy and the first answer wins; calls not safe to
//! repeat and streams never get one; the extra load stays under its cap; and
//! the percentile delay waits for enough measured calls.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stache_resilience::hedge::{DEFAULT_BURST, Hedge, HedgeStats};
use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::server::{Reply, Server};

fn slow(after: Duration) -> Reply {
    Reply::Chunks {
        status: 200,
        chunks: vec![Bytes::from_static(br#"{"slow":true}"#)],
        gap: after,
    }
}

fn client(url: &str, hedge: Hedge) -> HttpClient {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 0;
    config.default_timeout = Duration::from_secs(2);
    // A connection per attempt: on the paused clock, a keep-alive connection
    // reused after a trickled body stalls the test server (not so on the
    // real clock).
    config.max_keepalive_connections = 0;
    config.hedge = Some(hedge);
    HttpClient::new(config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_gets_a_copy_and_the_first_answer_wins() {
    // The first request hangs; the copy is answered at once.
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::json(200, r#"{"slow":false}"#)
        }
    })
    .await;
    let client = client(
        &server.url(),
        Hedge::fixed(Duration::from_millis(50)).max_extra_load(1.0),
    );
    let started = tokio::time::Instant::now();
    let answer = client.get("/v1/models").await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.json::<serde_json::Value>().unwrap()["slow"], false);
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_millis(500),
        "{took:?}"
    );
    assert_eq!(server.hits(), 2);
    let stats = client.stats().hedge;
    assert_eq!((stats.sent, stats.won), (1, 1));

    // A call answered before the delay gets no copy.
    client.get("/v1/models").await.unwrap();
    assert_eq!(server.hits(), 3);
    assert_eq!(client.stats().hedge.sent, 1);
}

#[tokio::test(start_paused = true)]
async fn calls_not_safe_to_repeat_and_streams_get_no_copy() {
    let server = Server::replies(vec![slow(Duration::from_millis(300))]).await;
    let client = client(
        &server.url(),
        Hedge::fixed(Duration::from_millis(50)).max_extra_load(1.0),
    );
    client
        .post("/v1/charge", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);
    let mut stream = client
        .stream_post("/v1/generate", &json!({"prompt": "hi"}))
        .await
        .unwrap();
    while stream.next_line().await.unwrap().is_some() {}
    assert_eq!(server.hits(), 2);
    assert_eq!(client.stats().hedge.sent, 0);

    // The same POST, safe to repeat (the default), is hedged.
    client
        .post("/v1/embed", &json!({"input": ["a"]}))
        .await
        .unwrap();
    assert_eq!(client.stats().hedge.sent, 1);
    assert_eq!(server.hits(), 4);
}

#[tokio::test(start_paused = true)]
async fn copies_stay_under_the_extra_load_cap() {
    let server = Server::replies(vec![slow(Duration::from_millis(200))]).await;
    let client = client(
        &server.url(),
        Hedge::fixed(Duration::from_millis(20)).max_extra_load(0.1),
    );
    for _ in 0..40 {
        client.get("/v1/models").await.unwrap();
    }
    // Every call is slow: the budget's first 5 copies go at once (a cold
    // client hedges), then one for each 10 calls.
    let stats = client.stats().hedge;
    assert!(stats.sent >= u64::from(DEFAULT_BURST), "{stats:?}");
    assert!(
        stats.sent <= u64::from(DEFAULT_BURST) + 4,
        "{} copies for 40 calls over a 10% budget with a burst of 5",
        stats.sent
    );
    assert_eq!(stats.sent + stats.refused, 40, "{stats:?}");
    assert_eq!(server.hits() as u64, 40 + stats.sent);
}

// On the real clock: on the paused one, every timer fires before loopback I/O
// completes, so a delay learned from latencies means nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_percentile_delay_waits_for_enough_calls() {
    // Every 10th answer is slow, the rest at once.
    let server = Server::start(|n, _| {
        if n % 10 == 9 {
            slow(Duration::from_millis(300))
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let client = client(
        &server.url(),
        Hedge::percentile(0.8, Duration::from_secs(10)).max_extra_load(0.5),
    );
    for _ in 0..60 {
        client.get("/v1/models").await.unwrap();
    }
    assert_eq!(client.stats().hedge.sent, 0, "fewer than 64 calls measured");
    for _ in 0..60 {
        client.get("/v1/models").await.unwrap();
    }
    // The slow sixth of those (every 10th request) were hedged, and their
    // copies (the next request: fast) won.
    let stats = client.stats().hedge;
    assert!(stats.won >= 3, "{stats:?}");
}

#[test]
fn hedge_settings_are_checked() {
    let mut config = HttpClientConfig::new("http://127.0.0.1:1");
    config.hedge = Some(Hedge::percentile(0.2, Duration::from_secs(1)));
    assert_eq!(config.validate().unwrap_err().field(), "hedge.percentile");
    config.hedge = Some(Hedge::fixed(Duration::from_millis(5)).max_extra_load(2.0));
    assert_eq!(
        config.validate().unwrap_err().field(),
        "hedge.max_extra_load"
    );
    config.hedge = Some(Hedge::fixed(Duration::from_millis(5)).burst(0));
    assert_eq!(config.validate().unwrap_err().field(), "hedge.burst");
}

/// Every 10th request's answer comes 2 s late; the rest at once.
async fn one_in_ten_late() -> Server {
    Server::start(|n, _| {
        if n % 10 == 9 {
            Reply::Late {
                after: Duration::from_secs(2),
                reply: Box::new(Reply::json(200, "{}")),
            }
        } else {
            Reply::json(200, "{}")
        }
    })
    .await
}

/// Sends 200 calls one after another through `call`; returns their latencies,
/// sorted.
async fn latencies<F, Fut>(mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = std::time::Instant::now();
        call().await;
        seen.push(started.elapsed());
    }
    seen.sort();
    seen
}

/// The p99 of `sorted` is under the hedge delay plus twice the fast calls'
/// latency (their 90th percentile: nine in ten calls are fast), and the
/// copies stay within the budget: its burst plus 10% of the calls.
fn assert_hedged(sorted: &[Duration], delay: Duration, stats: HedgeStats) {
    let fast = sorted[179];
    let p99 = sorted[197];
    assert!(
        p99 < delay + fast * 2,
        "p99 {p99:?} over {delay:?} + 2 × {fast:?} ({stats:?})"
    );
    assert!(stats.won >= 15, "the late answers were beaten: {stats:?}");
    assert!(
        stats.sent <= u64::from(DEFAULT_BURST) + 20,
        "copies over the budget: {stats:?}"
    );
}

// On the real clock: on the paused one, timers fire before loopback I/O
// completes, and every call would look late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedge_layer_over_hyper_util_from_a_cold_start_cuts_the_p99() {
    use http_body_util::Full;
    use stache_resilience::hedge::HedgeLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};

    let server = one_in_ten_late().await;
    let delay = Duration::from_millis(100);
    let hedge = HedgeLayer::new(Hedge::fixed(delay)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(hedge.clone())
        .service(test_support::hyper_client::<Full<Bytes>>());
    let url = format!("{}/v1/models", server.url());
    let sorted = latencies(|| {
        let mut svc = svc.clone();
        let req = http::Request::get(url.as_str())
            .body(Full::default())
            .unwrap();
        async move {
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            assert_eq!(res.status(), 200);
        }
    })
    .await;
    assert_hedged(&sorted, delay, hedge.stats());
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedge_layer_over_reqwest_from_a_cold_start_cuts_the_p99() {
    use stache_resilience::hedge::HedgeLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};

    let server = one_in_ten_late().await;
    let delay = Duration::from_millis(100);
    let hedge = HedgeLayer::new(Hedge::fixed(delay)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(hedge.clone())
        .service(reqwest::Client::new());
    let url: reqwest::Url = format!("{}/v1/models", server.url()).parse().unwrap();
    let sorted = latencies(|| {
        let mut svc = svc.clone();
        let req = reqwest::Request::new(reqwest::Method::GET, url.clone());
        async move {
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            assert_eq!(res.status(), 200);
        }
    })
    .await;
    assert_hedged(&sorted, delay, hedge.stats());
}

// On the real clock, as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_below_a_retry_layer_is_sent_by_the_first_attempt() {
    use http_body_util::BodyExt;
    use http_body_util::combinators::BoxBody;
    use stache_resilience::classify::HttpClassifier;
    use stache_resilience::hedge::HedgeLayer;
    use stache_resilience::retry::{RetryConfig, RetryLayer};
    use tower::{Service, ServiceBuilder, ServiceExt};

    type Body = BoxBody<Bytes, std::convert::Infallible>;
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let hedge = HedgeLayer::new(Hedge::fixed(Duration::from_secs(1))).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryConfig::default()).classifier(HttpClassifier))
        .layer(hedge.clone())
        .service(test_support::hyper_client());
    // A body the retry layer keeps as it is sent (a `TeeBody`): only its
    // newest copy may read on, so the first attempt must be that copy.
    let body: Body = http_body_util::Full::new(Bytes::from_static(b"{\"doc\":1}")).boxed();
    let req = http::Request::put(format!("{}/v1/docs/1", server.url()))
        .body(body)
        .unwrap();
    let started = std::time::Instant::now();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hedge.stats().sent, 0, "the first attempt answered: no copy");
    assert_eq!(server.seen()[0].body, "{\"doc\":1}");
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_gets_no_copy() {
    // The first call fails and opens the circuit; the probe is slow and
    // answers: a copy would have been sent after 50 ms.
    let server = Server::start(|n, _| match n {
        0 => Reply::Status(503),
        _ => Reply::Late {
            after: Duration::from_millis(500),
            reply: Box::new(Reply::json(200, "{}")),
        },
    })
    .await;
    let mut config = HttpClientConfig::new(server.url());
    config.max_retries = 0;
    config.max_keepalive_connections = 0;
    config.circuit_breaker_threshold = 1;
    config.circuit_breaker_timeout = Duration::from_secs(10);
    config.circuit_breaker_half_open_max_calls = 1;
    config.hedge = Some(Hedge::fixed(Duration::from_millis(50)).max_extra_load(1.0));
    let client = HttpClient::new(config).unwrap();
    client.get("/v1/models").await.unwrap_err();
    tokio::time::advance(Duration::from_secs(11)).await;
    client.get("/v1/models").await.unwrap();
    assert_eq!(server.hits(), 2, "the probe went alone");
    assert_eq!(client.stats().hedge.sent, 0);
}
