//! Embeds 1,000 texts in batches of 50 under a provider's limits (requests and
//! tokens a minute), against an embedded server that enforces a limit of its
//! own and answers 429 past it, printing progress as it goes.
//!
//! Each batch declares its tokens with `RequestBuilder::cost`; the client
//! spaces the calls so that the server refuses none. Run it with
//! `cargo run --example rate_limited_batch` (about two seconds, no network).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use stache_resilience::rate_limit::RateLimit;
use stache_resilience::{HttpClient, HttpClientConfig};

/// The server's own limit: at most this many requests in any second.
const SERVER_PER_SECOND: usize = 15;
const TEXTS: usize = 1_000;
const BATCH: usize = 50;

/// What the embedded provider saw.
#[derive(Default)]
pub struct Provider {
    /// When each accepted request came, for the last second.
    recent: Mutex<VecDeque<Instant>>,
    pub accepted: AtomicUsize,
    pub refused: AtomicUsize,
}

/// How the batch went.
#[derive(Debug)]
pub struct Summary {
    pub embedded: usize,
    pub calls: usize,
    pub refused_by_server: usize,
    pub took: Duration,
}

async fn serve(provider: Arc<Provider>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let provider = provider.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let provider = provider.clone();
                    async move { Ok::<_, Infallible>(answer(&provider, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    provider: &Provider,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let now = Instant::now();
    let over = {
        let mut recent = provider.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent
            .front()
            .is_some_and(|t| now - *t > Duration::from_secs(1))
        {
            recent.pop_front();
        }
        let over = recent.len() >= SERVER_PER_SECOND;
        if !over {
            recent.push_back(now);
        }
        over
    };
    let mut response = if over {
        provider.refused.fetch_add(1, Ordering::SeqCst);
        let mut res = hyper::Response::new(Full::new(Bytes::from_static(
            br#"{"error":"rate limit reached"}"#,
        )));
        *res.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
        res.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
        res
    } else {
        provider.accepted.fetch_add(1, Ordering::SeqCst);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let inputs = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["input"].as_array().map(Vec::len))
            .unwrap_or(0);
        let data: Vec<_> = (0..inputs)
            .map(|i| json!({"index": i, "embedding": [0.1, 0.2, 0.3]}))
            .collect();
        hyper::Response::new(Full::new(Bytes::from(json!({"data": data}).to_string())))
    };
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A rough count of a text's tokens: a word is about four thirds of one.
fn tokens(text: &str) -> u32 {
    (text.split_whitespace().count() as u32 * 4).div_ceil(3)
}

/// Runs the batch against a fresh embedded provider; `progress` prints.
pub async fn run(progress: bool) -> Result<(Summary, Arc<Provider>), Box<dyn std::error::Error>> {
    let provider = Arc::new(Provider::default());
    let addr = serve(provider.clone()).await?;
    let mut config = HttpClientConfig::new(format!("http://{addr}/v1"));
    // Below the server's 15 a second: 600 requests and 600,000 tokens a minute
    // (sent all at once, the 20 batches would see 5 refused).
    config.rate_limit = Some(RateLimit::per_minute(600).tokens_per_minute(600_000));
    let client = HttpClient::for_provider("embeddings", config)?;

    let texts: Vec<String> = (0..TEXTS)
        .map(|i| format!("document {i}: the quick brown fox jumps over the lazy dog"))
        .collect();
    let started = Instant::now();
    let mut embedded = 0;
    let mut calls = 0;
    let mut pending = Vec::new();
    for batch in texts.chunks(BATCH) {
        let cost: u32 = batch.iter().map(|t| tokens(t)).sum();
        let call = client
            .post(
                "/embeddings",
                &json!({"model": "embed-small", "input": batch}),
            )
            .cost(cost)
            .send();
        pending.push((batch.len(), cost, tokio::spawn(call)));
    }
    for (n, cost, call) in pending {
        let response = call.await??;
        let body: serde_json::Value = response.json()?;
        let got = body["data"].as_array().map_or(0, Vec::len);
        if got != n {
            return Err(format!("asked for {n} embeddings, got {got}").into());
        }
        embedded += got;
        calls += 1;
        if progress {
            println!(
                "[{:>6.2}s] batch {calls:>2}: {n} texts, {cost} tokens — {embedded}/{TEXTS} embedded",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let summary = Summary {
        embedded,
        calls,
        refused_by_server: provider.refused.load(Ordering::SeqCst),
        took: started.elapsed(),
    };
    Ok((summary, provider))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (summary, _) = run(true).await?;
    println!(
        "{} texts embedded in {} calls over {:.2}s; the server refused {} attempts",
        summary.embedded,
        summary.calls,
        summary.took.as_secs_f64(),
        summary.refused_by_server
    );
    Ok(())
}
