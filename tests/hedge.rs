//! `HttpClientConfig::hedge` against loopback servers: a slow idempotent
//! call gets a second copy and the first answer wins; calls not safe to
//! repeat and streams never get one; the extra load stays under its cap; and
//! the percentile delay waits for enough measured calls.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stache_resilience::client::Hedge;
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
    let stats = client.stats().hedge;
    assert!(stats.sent >= 1, "{stats:?}");
    assert!(
        stats.sent <= 4,
        "{} copies for 40 calls over a 10% cap",
        stats.sent
    );
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
    let client = client(&server.url(), Hedge::percentile(0.8).max_extra_load(0.5));
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
    config.hedge = Some(Hedge::percentile(0.2));
    assert_eq!(config.validate().unwrap_err().field(), "hedge.percentile");
    config.hedge = Some(Hedge::fixed(Duration::from_millis(5)).max_extra_load(2.0));
    assert_eq!(
        config.validate().unwrap_err().field(),
        "hedge.max_extra_load"
    );
}
