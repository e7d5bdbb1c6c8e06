//! Faults, load and cancellation: a soak against a server that misbehaves at
//! random, callers that give up at random points, and a server that dies and
//! comes back. Loopback only, bounded in count and time.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use rand::{Rng, SeedableRng};
use serde_json::json;
use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::request_id::RequestId;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use support::{Loopback, http1};
use tokio::net::TcpListener;
use tracing::Instrument;

/// What the chaotic server counts.
#[derive(Default)]
struct Chaos {
    attempts: AtomicU64,
    per_id: Mutex<HashMap<String, u32>>,
    /// While set, every attempt is answered 503.
    down: AtomicBool,
}

enum Act {
    Ok,
    Unavailable,
    Throttle,
    Reset,
    Stall,
}

async fn chaos_server(chaos: Arc<Chaos>, seed: u64) -> Loopback {
    let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)));
    Loopback::start(move |stream| {
        let (chaos, rng) = (chaos.clone(), rng.clone());
        async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (chaos, rng) = (chaos.clone(), rng.clone());
                async move {
                    chaos.attempts.fetch_add(1, Ordering::SeqCst);
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    *chaos.per_id.lock().unwrap().entry(id).or_default() += 1;
                    let act = if chaos.down.load(Ordering::SeqCst) {
                        Act::Unavailable
                    } else {
                        match rng.lock().unwrap().random_range(0..100) {
                            0..60 => Act::Ok,
                            60..75 => Act::Unavailable,
                            75..87 => Act::Throttle,
                            87..97 => Act::Reset,
                            _ => Act::Stall,
                        }
                    };
                    let response = |status: u16, retry_after: Option<&'static str>| {
                        let mut res = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                        *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        if let Some(ra) = retry_after {
                            res.headers_mut()
                                .insert("retry-after", http::HeaderValue::from_static(ra));
                        }
                        res
                    };
                    match act {
                        Act::Ok => Ok(response(200, None)),
                        Act::Unavailable => Ok(response(503, None)),
                        Act::Throttle => Ok(response(429, Some("0"))),
                        Act::Reset => Err(std::io::Error::other("reset")),
                        Act::Stall => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Ok(response(200, None))
                        }
                    }
                }
            });
            http1(stream, svc).await;
        }
    })
    .await
}

/// This process's TCP sockets to or from `port` that are still open (owned by an
/// fd: sockets in TIME_WAIT have inode 0). Counting only the soak's own port
/// keeps the count free of the sockets of tests running beside it.
fn open_sockets(port: u16) -> usize {
    let port = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    cols.len() > 9
                        && (cols[1].ends_with(&port) || cols[2].ends_with(&port))
                        && cols[9] != "0"
                })
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_twenty_thousand_calls_end_classified_and_leave_nothing_behind() {
    const CALLERS: usize = 64;
    const CALLS_EACH: usize = 320; // 20,480 calls
    // The soak runs on worker threads: its tasks carry the capture's span.
    let logs = support::capture_logs();
    let _on = logs.install();
    let chaos = Arc::new(Chaos::default());
    let server = chaos_server(chaos.clone(), 7).await;
    let addr = server.addr;

    let mut config = HttpClientConfig::new(format!("http://{addr}"));
    config.max_retries = 3;
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(4);
    config.retry.budget = false;
    config.default_timeout = Duration::from_millis(100);
    config.circuit_breaker_threshold = 10;
    config.circuit_breaker_timeout = Duration::from_millis(20);
    config.max_connections = CALLERS;
    config.max_keepalive_connections = CALLERS;
    let client = HttpClient::new(config).unwrap();

    // Two outages, placed by the run's progress rather than by the clock, each
    // lasting until it has opened the circuit: however slowly a loaded machine
    // runs the soak, it spans outages and recoveries.
    let outages = Arc::new(AtomicU64::new(0));
    let outage = {
        let (chaos, outages) = (chaos.clone(), outages.clone());
        let mut states = client.circuit_breaker().subscribe();
        tokio::spawn(async move {
            for start in [4_000, 12_000] {
                while chaos.attempts.load(Ordering::SeqCst) < start {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                chaos.down.store(true, Ordering::SeqCst);
                while *states.borrow_and_update() != CircuitState::Open {
                    if states.changed().await.is_err() {
                        return;
                    }
                }
                chaos.down.store(false, Ordering::SeqCst);
                outages.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller_no| {
            let client = client.clone();
            let caller = async move {
                let mut tally: HashMap<&'static str, u64> = HashMap::new();
                for call_no in 0..CALLS_EACH {
                    // An ID of its own for each call: 20,000 random 32-bit IDs
                    // collide with a chance of about 5%, and two calls sharing
                    // one would look like a call over its attempt limit.
                    let value = http::HeaderValue::from_str(&format!("soak-{caller_no}-{call_no}"))
                        .expect("a valid header value");
                    let id = RequestId::parse(&value).expect("a valid request ID");
                    let kind = match client
                        .post("/embeddings", &json!({"input": ["x"]}))
                        .request_id(id)
                        .await
                    {
                        Ok(r) if r.status() == 200 => "ok",
                        Ok(_) => "ok-other",
                        Err(e) => match e.kind() {
                            ErrorKind::CircuitOpen => "circuit_open",
                            ErrorKind::Status => "status",
                            ErrorKind::Timeout => "timeout",
                            ErrorKind::Transport => "transport",
                            ErrorKind::Connect => "connect",
                            other => panic!("unexpected error kind {other:?}: {e:?}"),
                        },
                    };
                    *tally.entry(kind).or_default() += 1;
                    if kind == "circuit_open" {
                        // As an application would: back off while the provider
                        // is refused, so the run spans outages and recoveries.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                tally
            };
            tokio::spawn(caller.instrument(logs.span()))
        })
        .collect();
    let mut tally: HashMap<&'static str, u64> = HashMap::new();
    for caller in callers {
        let done = tokio::time::timeout(Duration::from_secs(120), caller)
            .await
            .expect("a caller hung")
            .expect("a caller panicked");
        for (k, v) in done {
            *tally.entry(k).or_default() += v;
        }
    }
    let took = started.elapsed();
    eprintln!("soak: {tally:?} in {took:?}");
    outage.abort();
    assert_eq!(
        outages.load(Ordering::SeqCst),
        2,
        "both outages opened the circuit"
    );

    let total: u64 = tally.values().sum();
    assert_eq!(total, (CALLERS * CALLS_EACH) as u64, "every call ended");
    assert!(tally["ok"] > total / 2, "most calls succeed: {tally:?}");
    assert!(
        tally.get("circuit_open").copied().unwrap_or(0) > 0,
        "the outages opened the circuit"
    );

    let stats = client.stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.free_connection_slots, CALLERS);
    // The client counts every attempt it starts. An attempt cut by its 100 ms
    // timeout before its request reached the server (a loaded machine is slow
    // to connect and write) is never seen there; every other one is, once its
    // handler has run.
    let timed_out = logs
        .events()
        .iter()
        .filter(|e| e.message.contains("failed: request timed out"))
        .count() as u64;
    let seen = || chaos.attempts.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen() + timed_out < stats.attempts && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen() <= stats.attempts,
        "the server saw {} attempts, more than the {} the client counted",
        seen(),
        stats.attempts
    );
    assert!(
        seen() + timed_out >= stats.attempts,
        "{} attempts the server never saw, and only {timed_out} timed out",
        stats.attempts - seen()
    );
    let most = chaos
        .per_id
        .lock()
        .unwrap()
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    assert!(
        most <= 4,
        "a call made {most} attempts (limit 1 + max_retries)"
    );
    assert_eq!(stats.requests, total);

    // The breaker's transitions form one valid chain.
    let mut seen = support::transitions(&logs.events());
    seen.sort();
    assert!(seen.len() >= 3, "{seen:?}");
    let mut state = "closed".to_owned();
    for (i, (generation, from, to)) in seen.iter().enumerate() {
        assert_eq!(
            *generation,
            i as u64 + 1,
            "lost or doubled transition: {seen:?}"
        );
        assert_eq!(from, &state);
        assert!(matches!(
            (from.as_str(), to.as_str()),
            ("closed", "open")
                | ("open", "half_open")
                | ("half_open", "closed")
                | ("half_open", "open")
        ));
        state = to.clone();
    }

    // Nothing left open once the client and the server are gone.
    assert!(open_sockets(addr.port()) > 0, "the count sees the listener");
    drop(client);
    server.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_sockets(addr.port()) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open_sockets(addr.port()),
        0,
        "sockets of the soak's port still open"
    );
}

#[tokio::test]
async fn callers_that_give_up_at_random_points_leave_no_slot_taken() {
    use support::{Reply, Server};
    // Slow answers, failures and streams, so that cancellation lands during
    // connects, attempts, backoff sleeps, half-open probes and streaming.
    let server = Server::start(|n, seen| {
        if seen.path == "/stream" {
            return Reply::Chunks {
                status: 200,
                chunks: vec![Bytes::from_static(b"a\n"); 5],
                gap: Duration::from_millis(3),
            };
        }
        match n % 5 {
            0 => Reply::Status(503),
            1 => Reply::Chunks {
                status: 200,
                chunks: vec![Bytes::from_static(b"{}")],
                gap: Duration::from_millis(4),
            },
            2 => Reply::Drop,
            _ => Reply::json(200, "{}"),
        }
    })
    .await;
    let mut config = HttpClientConfig::new(server.url());
    config.retry_base_delay = Duration::from_millis(2);
    config.retry_max_delay = Duration::from_millis(8);
    config.circuit_breaker_threshold = 3;
    config.circuit_breaker_timeout = Duration::from_millis(10);
    config.circuit_breaker_half_open_max_calls = 2;
    config.max_connections = 8;
    config.max_keepalive_connections = 8;
    let client = HttpClient::new(config).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut cancelled = 0;
    for round in 0..40 {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let client = client.clone();
                let give_up = Duration::from_micros(rng.random_range(0..12_000));
                tokio::spawn(async move {
                    let work = async {
                        if (round + i) % 4 == 0 {
                            let mut stream = client.stream_post("/stream", &json!({})).await?;
                            while stream.next_line().await?.is_some() {}
                            Ok::<_, stache_resilience::Error>(())
                        } else {
                            client.post("/x", &json!({})).await.map(|_| ())
                        }
                    };
                    tokio::time::timeout(give_up, work).await.is_err()
                })
            })
            .collect();
        for t in tasks {
            cancelled += usize::from(t.await.unwrap());
        }
    }
    assert!(
        cancelled > 50,
        "the test cancelled too few calls ({cancelled})"
    );
    let stats = client.stats();
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.free_connection_slots, 8, "{stats:?}");
    // No half-open slot is stranded: once the circuit may probe, probes get in.
    tokio::time::sleep(Duration::from_millis(15)).await;
    let breaker = client.circuit_breaker();
    if breaker.state() == CircuitState::HalfOpen {
        assert!(breaker.can_attempt(), "half-open with every slot stranded");
        breaker.record_success();
        breaker.record_success();
    }
    let healthy = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut config = client.config().clone();
    config.base_url = healthy.url();
    drop(client);
    let client = HttpClient::new(config).unwrap();
    for _ in 0..5 {
        client.post("/x", &json!({})).await.unwrap();
    }
}

#[tokio::test]
async fn a_server_that_dies_and_comes_back_is_used_again_without_a_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let serve = |listener: TcpListener| {
        let hits = hits.clone();
        Loopback::serve(listener, move |stream| {
            let hits = hits.clone();
            let svc = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                hits.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
                }
            });
            http1(stream, svc)
        })
    };
    let server = serve(listener);
    let mut config = HttpClientConfig::new(format!("http://{addr}"));
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    config.circuit_breaker_threshold = 2;
    config.circuit_breaker_timeout = Duration::from_millis(50);
    config.max_keepalive_connections = 0;
    let client = HttpClient::new(config).unwrap();
    client.get("/").await.unwrap();

    // Down: the port refuses connections. A socket bound to it, not listening,
    // keeps it from being handed to a test running beside this one meanwhile.
    server.shutdown().await;
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.set_reuseaddr(true).unwrap();
    held.bind(addr).unwrap();
    for _ in 0..2 {
        assert!(client.get("/").await.unwrap_err().is_connect());
    }
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    assert!(client.get("/").await.unwrap_err().is_circuit_open());

    // Back on the same port.
    let back = Instant::now();
    let before = hits.load(Ordering::SeqCst);
    let server = serve(held.listen(1024).unwrap());
    loop {
        match client.get("/").await {
            Ok(_) => break,
            Err(e) => assert!(e.is_circuit_open(), "{e:?}"),
        }
        assert!(back.elapsed() < Duration::from_secs(10), "never recovered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Refused until the breaker's timeout ran out, then the first test call
    // went through: the server saw one request, the breaker one good probe.
    assert_eq!(hits.load(Ordering::SeqCst) - before, 1);
    let stats = client.circuit_breaker().stats();
    assert_eq!(
        (stats.state, stats.success_count),
        (CircuitState::HalfOpen, 1)
    );
    drop(server);
}
