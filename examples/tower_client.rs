//! The layers on a plain hyper-util client with `ServiceBuilder`, in the two
//! orders that make sense:
//!
//! * **breaker outside retry** (the default of `HttpClient`): the breaker sees
//!   one outcome per call, after its retries. A transient blip that a retry
//!   fixes never counts against the circuit; a dead service costs
//!   `1 + max_retries` attempts per call until the circuit opens.
//! * **retry outside the breaker**: every attempt counts, so the circuit opens
//!   after `failure_threshold` attempts rather than calls, and once it is open
//!   the retry layer stops at once (it never retries `CircuitOpen`). Choose it
//!   when attempts are expensive for the service (a GPU model server) and you
//!   would rather stop hammering it sooner.
//!
//! `cargo run --example tower_client` (starts its own loopback server).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stache_resilience::classify::HttpClassifier;
use stache_resilience::retry::{Idempotent, Jitter, RetryConfig};
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, ServiceBuilderExt};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Starts a server that answers 503 to everything; returns its URL and a
/// counter of the attempts it saw.
pub async fn dead_server() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async {
                            let mut res =
                                hyper::Response::new(Full::new(Bytes::from_static(b"busy")));
                            *res.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            Ok::<_, Infallible>(res)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((url, hits))
}

/// Attempts the server saw, in each order, for `calls` calls.
#[derive(Debug)]
pub struct Summary {
    pub breaker_outside: usize,
    pub retry_outside: usize,
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        jitter: Jitter::Symmetric,
        total_timeout: None,
        max_replay_bytes: 64 * 1024,
    }
}

fn post(url: &str) -> http::Request<Full<Bytes>> {
    // Embedding calls are safe to repeat; the retry layer replays a POST only
    // when told so (or when the server provably did not act on it).
    http::Request::post(format!("{url}/embed"))
        .extension(Idempotent(true))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"input":["hi"]}"#)))
        .unwrap_or_default()
}

pub async fn run(url: &str, hits: &AtomicUsize, calls: usize) -> Summary {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let breaker_config = CircuitBreakerConfig {
        failure_threshold: 4,
        ..Default::default()
    };

    // Breaker outside retry: one breaker outcome per call.
    let breaker = CircuitBreaker::new(breaker_config);
    let mut svc = ServiceBuilder::new()
        .request_id()
        .circuit_breaker_with(breaker.clone(), HttpClassifier)
        .resilient_retry_with(retry_config(), HttpClassifier)
        .attempt_timeout(Duration::from_secs(5))
        .service(client.clone());
    let before = hits.load(Ordering::SeqCst);
    for _ in 0..calls {
        if let Ok(ready) = svc.ready().await {
            let _ = ready.call(post(url)).await;
        }
    }
    let breaker_outside = hits.load(Ordering::SeqCst) - before;
    println!(
        "breaker outside retry: {calls} calls -> {breaker_outside} attempts, breaker {} after {} failed calls",
        breaker.state(),
        breaker.stats().failure_count
    );

    // Retry outside the breaker: every attempt counts.
    let breaker = CircuitBreaker::new(breaker_config);
    let mut svc = ServiceBuilder::new()
        .request_id()
        .resilient_retry_with(retry_config(), HttpClassifier)
        .circuit_breaker_with(breaker.clone(), HttpClassifier)
        .attempt_timeout(Duration::from_secs(5))
        .service(client);
    let before = hits.load(Ordering::SeqCst);
    for _ in 0..calls {
        if let Ok(ready) = svc.ready().await {
            let _ = ready.call(post(url)).await;
        }
    }
    let retry_outside = hits.load(Ordering::SeqCst) - before;
    println!(
        "retry outside breaker: {calls} calls -> {retry_outside} attempts, breaker {}",
        breaker.state()
    );
    Summary {
        breaker_outside,
        retry_outside,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let (url, hits) = dead_server().await?;
    let summary = run(&url, &hits, 6).await;
    println!("{summary:?}");
    Ok(())
}
