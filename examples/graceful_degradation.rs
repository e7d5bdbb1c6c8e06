//! Graceful degradation: a primary provider whose circuit opens, a fallback
//! provider that takes over while it is open, and the primary taking back over
//! once it recovers. Only an open circuit sends calls to the fallback; any other
//! error is the caller's to see, as in the original design.
//!
//! `cargo run --example graceful_degradation` (starts two loopback servers).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;
use stache_resilience::{Error, HttpClientConfig, ServiceRegistry};

/// A loopback provider answering `{"text": name}`, or 503 while `up` is false.
pub async fn provider(name: &'static str, up: Arc<AtomicBool>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let up = up.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let healthy = up.load(Ordering::SeqCst);
                        async move {
                            let body = format!(r#"{{"text":"{name}"}}"#);
                            let mut res = hyper::Response::new(Full::new(Bytes::from(body)));
                            if !healthy {
                                *res.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
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
    Ok(url)
}

fn config(url: &str, recovery: Duration) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(20);
    config.circuit_breaker_threshold = 2;
    config.circuit_breaker_timeout = recovery;
    config.circuit_breaker_half_open_max_calls = 1;
    config
}

/// Asks the primary; while its circuit is open, asks the fallback instead.
pub async fn generate_with_fallback(
    registry: &ServiceRegistry,
    prompt: &str,
) -> Result<String, Error> {
    let body = json!({ "prompt": prompt });
    let primary = registry.get("primary").expect("registered at start-up");
    match primary.post("/generate", &body).await {
        Ok(response) => text(response),
        Err(e) if e.is_circuit_open() => {
            tracing::warn!("primary provider unavailable, using the fallback");
            let fallback = registry.get("fallback").expect("registered at start-up");
            text(fallback.post("/generate", &body).await?)
        }
        Err(e) => Err(e),
    }
}

fn text(response: stache_resilience::client::Response) -> Result<String, Error> {
    let value: serde_json::Value = response.json()?;
    Ok(value["text"].as_str().unwrap_or_default().to_owned())
}

/// Who answered each call: "primary", "fallback", or "error". `recovery` is the
/// primary's breaker timeout.
pub async fn run(recovery: Duration) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let primary_up = Arc::new(AtomicBool::new(true));
    let registry = ServiceRegistry::new();
    registry.get_client(
        "primary",
        config(&provider("primary", primary_up.clone()).await?, recovery),
    )?;
    registry.get_client(
        "fallback",
        config(
            &provider("fallback", Arc::new(AtomicBool::new(true))).await?,
            recovery,
        ),
    )?;

    let mut answers = Vec::new();
    let ask = async |answers: &mut Vec<String>| {
        let answer = match generate_with_fallback(&registry, "hello").await {
            Ok(text) => text,
            Err(e) => {
                println!("  error: {e}");
                "error".to_owned()
            }
        };
        println!("answered by: {answer}");
        answers.push(answer);
    };

    ask(&mut answers).await;
    println!("-- the primary goes down");
    primary_up.store(false, Ordering::SeqCst);
    for _ in 0..4 {
        ask(&mut answers).await;
    }
    println!("-- the primary comes back; after the recovery timeout a probe finds it");
    primary_up.store(true, Ordering::SeqCst);
    tokio::time::sleep(recovery + Duration::from_millis(1)).await;
    for _ in 0..2 {
        ask(&mut answers).await;
    }
    Ok(answers)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let answers = run(Duration::from_millis(200)).await?;
    println!("{answers:?}");
    Ok(())
}
