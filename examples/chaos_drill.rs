//! A failover drill: an application calls a primary embeddings provider with a
//! backup behind it (`failover::ProviderGroup`), while injected faults
//! (`chaos::Chaos`) kill the primary's requests 30% of the time: a connection
//! reset before the request leaves. Every call still gets an answer; the drill
//! prints who gave each one, and what the primary's breaker made of it.
//!
//! Both providers are embedded loopback servers; the seed makes the run the
//! same every time. Run it with `cargo run --example chaos_drill` (well under
//! a second, no network).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use stache_resilience::chaos::{Chaos, Fault};
use stache_resilience::failover::ProviderGroup;
use stache_resilience::{HttpClient, HttpClientConfig};

const CALLS: usize = 40;

/// How the drill went.
#[derive(Debug, Default)]
pub struct Summary {
    pub answered: usize,
    pub by_primary: usize,
    pub by_backup: usize,
    pub failed: usize,
    /// Requests each embedded server received.
    pub primary_hits: usize,
    pub backup_hits: usize,
}

/// An embeddings server answering every request, counting them.
async fn serve(name: &'static str, hits: Arc<AtomicUsize>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = json!({"model": name, "data": [{"embedding": [0.1, 0.2]}]});
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Runs the drill; `verbose` prints a line per call.
pub async fn run(verbose: bool) -> Result<Summary, Box<dyn std::error::Error>> {
    let (primary_hits, backup_hits) = (Arc::default(), Arc::default());
    let primary_addr = serve("primary", Arc::clone(&primary_hits)).await?;
    let backup_addr = serve("backup", Arc::clone(&backup_hits)).await?;

    let mut primary = HttpClientConfig::new(format!("http://{primary_addr}/v1"));
    // No retry at the primary: each killed request goes to the backup, which
    // is what this drill exercises.
    primary.max_retries = 0;
    primary.circuit_breaker_threshold = 5;
    primary.chaos = Some(Chaos::new().seed(2026).before(0.3, Fault::Reset));
    let backup = HttpClientConfig::new(format!("http://{backup_addr}/v1"));
    let group = ProviderGroup::new(vec![
        HttpClient::for_provider("primary", primary)?,
        HttpClient::for_provider("backup", backup)?,
    ])
    .deadline(Duration::from_secs(5));

    let mut summary = Summary::default();
    for call in 1..=CALLS {
        let body = json!({"input": [format!("text {call}")]});
        match group.post("/embeddings", &body).await {
            Ok(answer) => {
                summary.answered += 1;
                let by = answer.provider().unwrap_or("?");
                if by == "primary" {
                    summary.by_primary += 1;
                } else {
                    summary.by_backup += 1;
                }
                if verbose {
                    println!("call {call:>2}: answered by {by}");
                }
            }
            Err(e) => {
                summary.failed += 1;
                if verbose {
                    println!("call {call:>2}: failed: {e} ({:?})", e.attempts());
                }
            }
        }
    }
    summary.primary_hits = primary_hits.load(Ordering::SeqCst);
    summary.backup_hits = backup_hits.load(Ordering::SeqCst);
    if verbose {
        let stats = group.clients().next().map(HttpClient::stats);
        println!(
            "\n{} of {CALLS} calls answered ({} by the primary, {} by the backup), {} failed",
            summary.answered, summary.by_primary, summary.by_backup, summary.failed
        );
        if let Some(stats) = stats {
            println!(
                "primary: {} requests reached it, {} retries, {} calls refused by its breaker, breaker now {:?}",
                stats.attempts, stats.retries, stats.rejected, stats.circuit_breaker_state
            );
        }
    }
    Ok(summary)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let summary = run(true).await?;
    if summary.failed > 0 {
        return Err(format!("{} calls failed despite the backup", summary.failed).into());
    }
    Ok(())
}
