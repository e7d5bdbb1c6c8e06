//! Every pool knob takes effect: connect, write and pool timeouts, the in-flight
//! limit, idle connections kept and their expiry.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use support::{Loopback, Reply, Server};

fn config(url: &str) -> HttpClientConfig {
    let mut c = HttpClientConfig::new(url);
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(5);
    c.max_retries = 0;
    c
}

#[tokio::test]
async fn connect_timeout_bounds_a_connect_that_hangs() {
    // A listener that never accepts, its accept queue filled: further SYNs go
    // unanswered and a connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            held.push(s);
        }
    }
    let mut c = config(&format!("http://{addr}"));
    c.connect_timeout = Duration::from_millis(100);
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    let err = client.get("/").await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_connect(), "{err:?}");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn write_timeout_bounds_a_peer_that_stops_reading() {
    // Accepts, then never reads: the socket buffers fill and writes stall. A
    // small receive buffer keeps the body needed for that small.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    // Holds each connection open and never reads from it.
    let holder = Loopback::serve(listener, |stream| async move {
        std::future::pending::<()>().await;
        drop(stream);
    });
    let mut c = config(&holder.url());
    c.write_timeout = Duration::from_millis(100);
    c.default_timeout = Duration::from_secs(10);
    let client = HttpClient::new(c).unwrap();
    let big = "x".repeat(8 * 1024 * 1024);
    let started = Instant::now();
    let err = client
        .post("/upload", &json!({ "data": big }))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(
        !err.to_string().contains("request timed out after"),
        "the write timeout fired, not the attempt timeout: {err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(holder);
}

#[tokio::test]
async fn max_connections_and_pool_timeout_bound_the_wait_for_a_slot() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.max_connections = 1;
    c.max_keepalive_connections = 1;
    c.pool_timeout = Duration::from_millis(50);
    c.default_timeout = Duration::from_secs(10);
    let client = HttpClient::new(c).unwrap();

    let busy = tokio::spawn({
        let client = client.clone();
        async move { client.get("/hang").await }
    });
    while server.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(client.stats().free_connection_slots, 0);

    let started = Instant::now();
    let err = client.get("/second").await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_pool_timeout(), "{err:?}");
    assert!(
        took >= Duration::from_millis(45) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(server.hits(), 1, "the second call never reached the server");
    assert_eq!(
        client.circuit_breaker().stats().failure_count,
        0,
        "local congestion is not a service failure"
    );

    // Cancelling the busy call gives its slot back.
    busy.abort();
    let _ = busy.await;
    assert_eq!(client.stats().free_connection_slots, 1);
    assert_eq!(client.stats().in_flight, 0);
}

#[tokio::test]
async fn idle_connections_are_reused_and_expire() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    c.keepalive_expiry = Duration::from_secs(30);
    let client = HttpClient::new(c).unwrap();
    for _ in 0..3 {
        client.get("/").await.unwrap();
    }
    assert_eq!(
        server.connections(),
        1,
        "one kept-alive connection serves all"
    );

    // Past keepalive_expiry the idle connection is not reused.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
    client.get("/").await.unwrap();
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn max_keepalive_connections_caps_idle_connections() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    c.max_keepalive_connections = 0;
    let client = HttpClient::new(c).unwrap();
    for _ in 0..3 {
        client.get("/").await.unwrap();
    }
    assert_eq!(server.connections(), 3, "no idle connection is kept");

    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.max_keepalive_connections = 1;
    c.max_connections = 3;
    c.default_timeout = Duration::from_secs(10);
    let client = HttpClient::new(c).unwrap();
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/").await })
        })
        .collect();
    while server.hits() < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        server.connections(),
        3,
        "three calls in flight use three connections"
    );
    assert_eq!(client.stats().in_flight, 3);
    for task in in_flight {
        task.abort();
    }
}
