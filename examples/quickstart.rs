//! The tour: a provider client riding out a flaky service, then a dead one.
//!
//! Starts an embedded HTTP server on 127.0.0.1 that plays three parts in turn —
//! flaky (every call's first two attempts get 503), down (always 503), and
//! healthy again — and prints a timeline of what the client does: retries with
//! one request ID per call, the circuit opening, calls refused in microseconds,
//! the half-open probes, recovery, and the final stats.
//!
//! Run it with `cargo run --example quickstart`. It needs no network and ends by
//! itself in a few seconds. Set `RUST_LOG=stache_resilience=debug` for more.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use stache_resilience::{HttpClientConfig, ServiceRegistry};

const FLAKY: u8 = 0;
const DOWN: u8 = 1;
const HEALTHY: u8 = 2;

/// The embedded server: its behaviour and what it has seen.
struct Flaky {
    mode: AtomicU8,
    attempts_by_id: Mutex<HashMap<String, usize>>,
    hits: AtomicUsize,
}

async fn serve(state: Arc<Flaky>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn answer(state: &Flaky, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let attempt = {
        let mut seen = state
            .attempts_by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(id).or_default();
        *n += 1;
        *n
    };
    let ok = match state.mode.load(Ordering::SeqCst) {
        FLAKY => attempt > 2,
        DOWN => false,
        _ => true,
    };
    let (status, body) = if ok {
        (200, r#"{"embeddings":[[0.12,-0.03,0.88]]}"#)
    } else {
        (503, r#"{"error":"model is loading"}"#)
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "stache_resilience=info".into()),
        )
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let server = Arc::new(Flaky {
        mode: AtomicU8::new(FLAKY),
        attempts_by_id: Mutex::new(HashMap::new()),
        hits: AtomicUsize::new(0),
    });
    let addr = serve(server.clone()).await?;
    let started = Instant::now();
    let t = || format!("[{:>5.2}s]", started.elapsed().as_secs_f64());

    // The Ollama preset, with delays shortened so the tour takes seconds.
    let mut config = HttpClientConfig::ollama(format!("http://{addr}"));
    config.retry_base_delay = Duration::from_millis(50);
    config.retry_max_delay = Duration::from_millis(400);
    config.circuit_breaker_threshold = 3;
    config.circuit_breaker_timeout = Duration::from_secs(2);
    config.circuit_breaker_half_open_max_calls = 2;
    let client = ServiceRegistry::global().get_client("ollama", config)?;
    let body = json!({ "model": "nomic-embed-text", "input": ["hello"] });

    println!("{} embedded flaky server on http://{addr}", t());
    println!("\n== 1. A flaky service: every call's first two attempts get 503");
    for _ in 0..2 {
        let response = client.post("/api/embed", &body).await?;
        println!(
            "{} call {} -> {} after retries (same request ID on every attempt)",
            t(),
            response.request_id(),
            response.status()
        );
    }

    println!("\n== 2. The service goes down: every attempt gets 503");
    server.mode.store(DOWN, Ordering::SeqCst);
    for _ in 0..3 {
        let err = client.post("/api/embed", &body).await.err();
        if let Some(err) = err {
            println!(
                "{} call {} failed after 4 attempts: {err}",
                t(),
                err.request_id().map(|id| id.as_str()).unwrap_or("-")
            );
        }
        println!(
            "{}   breaker: {}",
            t(),
            client.circuit_breaker().stats().state
        );
    }

    println!("\n== 3. The circuit is open: calls fail fast, the server sees nothing");
    let hits_before = server.hits.load(Ordering::SeqCst);
    for _ in 0..3 {
        let call = Instant::now();
        let err = client.post("/api/embed", &body).await.err();
        let took = call.elapsed();
        if let Some(err) = err {
            println!("{} rejected in {took:?}: {err}", t());
        }
    }
    println!(
        "{}   attempts that reached the server meanwhile: {}",
        t(),
        server.hits.load(Ordering::SeqCst) - hits_before
    );

    println!("\n== 4. The service comes back; after the recovery timeout, test calls go through");
    server.mode.store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("{}   breaker: {}", t(), client.circuit_breaker().state());
    for i in 1..=3 {
        let response = client.post("/api/embed", &body).await?;
        println!(
            "{} {} -> {}; breaker now {}",
            t(),
            if i <= 2 { "probe" } else { "call" },
            response.status(),
            client.circuit_breaker().state()
        );
    }
    let embeddings: serde_json::Value = client.post("/api/embed", &body).await?.json()?;
    println!("{} embedding: {}", t(), embeddings["embeddings"][0]);

    println!("\n== 5. Final stats");
    let stats = client.stats();
    println!(
        "{} requests {}, attempts {}, retries {}, rejected by the breaker {}, failed {}, in flight {}",
        t(),
        stats.requests,
        stats.attempts,
        stats.retries,
        stats.rejected,
        stats.failures,
        stats.in_flight
    );
    println!(
        "{} breaker {} (threshold {}), server saw {} attempts",
        t(),
        stats.circuit_breaker_state,
        stats.circuit_breaker_threshold,
        server.hits.load(Ordering::SeqCst)
    );
    Ok(())
}
