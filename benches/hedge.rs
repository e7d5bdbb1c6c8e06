//! Hedging against a long tail: a loopback server where 5% of answers take
//! 500 ms and the rest 5 ms (drawn per request from a fixed seed), 2,000 calls
//! at 16 at a time, side by side without hedging and with it (a copy after
//! the 90th percentile of recent latencies, and after a fixed 20 ms). Prints
//! p50, p99 and the extra load; issue 15's target: p99 with hedging at most
//! 0.2 of p99 without, extra load at most 10%.
//!
//! `cargo bench -p stache-benches --bench hedge`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use stache_resilience::hedge::Hedge;
use stache_resilience::{HttpClient, HttpClientConfig};

const CALLS: usize = 2_000;
const CONCURRENCY: usize = 16;

/// A server whose n-th request takes 500 ms 5% of the time, else 5 ms.
async fn serve(hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                    let n = hits.fetch_add(1, Ordering::Relaxed) as u64;
                    async move {
                        // A fixed, well-spread draw per request.
                        let slow = splitmix(n) % 100 < 5;
                        let wait = if slow { 500 } else { 5 };
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Run {
    p50: Duration,
    p99: Duration,
    extra: f64,
    sent: u64,
    won: u64,
}

async fn run(hedge: Option<Hedge>) -> Run {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = serve(hits.clone()).await;
    let mut config = HttpClientConfig::new(format!("http://{addr}"));
    config.hedge = hedge;
    config.max_connections = 64;
    config.max_keepalive_connections = 64;
    let client = HttpClient::new(config).unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < CALLS as u64 {
                let started = Instant::now();
                client.get("/v1/embed").await.expect("an answer");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let stats = client.stats().hedge;
    Run {
        p50: at(0.5),
        p99: at(0.99),
        extra: hits.load(Ordering::Relaxed) as f64 / CALLS as f64 - 1.0,
        sent: stats.sent,
        won: stats.won,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let without = run(None).await;
        let percentile = run(Some(Hedge::percentile(0.9, Duration::from_millis(50)))).await;
        let fixed = run(Some(Hedge::fixed(Duration::from_millis(20)))).await;
        println!("| client | p50 | p99 | p99 ratio | extra load | hedges sent / won |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (name, r) in [
            ("no hedging", &without),
            ("Hedge::percentile(0.9, 50 ms)", &percentile),
            ("Hedge::fixed(20 ms)", &fixed),
        ] {
            println!(
                "| {name} | {:.1} ms | {:.1} ms | {:.3} | {:.1}% | {} / {} |",
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() / without.p99.as_secs_f64(),
                r.extra * 100.0,
                r.sent,
                r.won
            );
        }
    });
}
