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

/// A client with one connection slot, held by a call the server never
/// answers (running in `busy`), once that call has reached the server.
async fn one_slot_held(
    pool_timeout: Duration,
    default_timeout: Duration,
) -> (
    Server,
    HttpClient,
    tokio::task::JoinHandle<Result<stache_resilience::client::Response, stache_resilience::Error>>,
) {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.max_connections = 1;
    c.max_keepalive_connections = 1;
    c.pool_timeout = pool_timeout;
    c.default_timeout = default_timeout;
    let client = HttpClient::new(c).unwrap();
    let busy = tokio::spawn({
        let client = client.clone();
        async move { client.get("/hang").await }
    });
    while server.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (server, client, busy)
}

#[tokio::test]
async fn max_connections_and_pool_timeout_bound_the_wait_for_a_slot() {
    let (server, client, busy) =
        one_slot_held(Duration::from_millis(50), Duration::from_secs(10)).await;
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

/// A service whose calls end when the test says so, counting the calls it took.
fn held_service(
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: tokio::sync::watch::Receiver<bool>,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<()>, std::convert::Infallible>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |_req: http::Request<()>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut release = release.clone();
        async move {
            let _ = release.wait_for(|go| *go).await;
            Ok(http::Response::new(()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_buffer_above_a_full_pool_sees_pending_and_works_on_once_a_slot_frees() {
    use stache_resilience::pool::{PoolLimitLayer, PoolTimeout};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Service, ServiceBuilder, ServiceExt};

    let calls = Arc::new(AtomicUsize::new(0));
    let (release, held) = tokio::sync::watch::channel(false);
    let pool = ServiceBuilder::new()
        .layer(PoolLimitLayer::new(1, Duration::from_secs(30)))
        .service(held_service(calls.clone(), held));
    let mut buffer = tower::buffer::Buffer::new(pool, 1);

    // A takes the only slot; B waits in the buffer's worker, which the pool
    // keeps unready; C fills the buffer's one place; so it is not ready for D.
    // (Were the pool ready while full, the worker would have passed B and C
    // on, to wait inside the pool, and the buffer would take D.)
    let a = tokio::spawn(buffer.ready().await.unwrap().call(http::Request::new(())));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let b = tokio::spawn(buffer.ready().await.unwrap().call(http::Request::new(())));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let c = tokio::spawn(buffer.ready().await.unwrap().call(http::Request::new(())));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "B must not reach the service"
    );
    let ready_for_d = tokio::time::timeout(Duration::from_millis(100), buffer.ready()).await;
    assert!(
        ready_for_d.is_err(),
        "the buffer said ready while the pool is full"
    );

    // A slot frees: B and C go, and the buffer takes D.
    release.send_replace(true);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    buffer
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // Past the pool timeout a waiting call fails with PoolTimeout, and the
    // buffer (whose readiness never failed) still serves the next one.
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, held) = tokio::sync::watch::channel(false);
    let pool = ServiceBuilder::new()
        .layer(PoolLimitLayer::new(1, Duration::from_millis(200)))
        .service(held_service(calls.clone(), held));
    let mut buffer = tower::buffer::Buffer::new(pool, 4);
    let a = tokio::spawn(buffer.ready().await.unwrap().call(http::Request::new(())));
    let b = buffer.ready().await.unwrap().call(http::Request::new(()));
    let err = b.await.unwrap_err();
    assert!(err.is::<PoolTimeout>(), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    release.send_replace(true);
    a.await.unwrap().unwrap();
    buffer
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .expect("the buffer works on after a pool timeout");
}

#[tokio::test(start_paused = true)]
async fn the_wait_for_a_slot_ends_at_the_call_s_deadline() {
    let (server, client, busy) =
        one_slot_held(Duration::from_secs(5), Duration::from_secs(30)).await;

    let started = tokio::time::Instant::now();
    let err = client
        .get("/second")
        .deadline(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.is_deadline(), "{err:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "not the 5 s pool timeout"
    );
    assert_eq!(server.hits(), 1);
    busy.abort();
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_its_rate_limit_turn_holds_no_slot() {
    use stache_resilience::rate_limit::RateLimit;

    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    c.max_connections = 1;
    c.max_keepalive_connections = 1;
    // One call a second: the second call waits about a second for its turn.
    c.rate_limit = Some(RateLimit::per_minute(60));
    c.retry_max_delay = Duration::from_secs(2);
    let client = HttpClient::new(c).unwrap();
    client.get("/first").await.unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.get("/second").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hits(), 1, "the second call waits for its turn");
    assert_eq!(
        client.stats().free_connection_slots,
        1,
        "the slot is free while the call waits for its turn"
    );
    waiting.await.unwrap().unwrap();
    assert_eq!(server.hits(), 2);
}
