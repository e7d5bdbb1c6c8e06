//! The layers over a `reqwest::Client` you already have (feature `reqwest`).
//!
//! `reqwest::Client` is a `tower::Service<reqwest::Request>`: the request ID
//! goes in its headers, the attempt timeout in `timeout_mut`, and a retry sends
//! `Request::try_clone`, so a buffered body is sent again and a streaming one
//! once. `HttpClassifier` reads its responses with the table it uses for hyper.
//!
//! `cargo run --example reqwest_client --features reqwest` starts a loopback
//! server of its own that answers 503 twice, then 200.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use stache_resilience::classify::HttpClassifier;
use stache_resilience::retry::{Replay, RetryConfig, RetryLayer};
use stache_resilience::{BoxError, CircuitBreaker, CircuitBreakerConfig, ServiceBuilderExt};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Starts a server that answers 503 to its first `failures` requests and 200
/// with a small JSON body after; returns its URL and its request counter.
pub async fn start_server(failures: u32) -> std::io::Result<(String, Arc<AtomicU32>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let (status, body) = if n < failures {
                            (503, "")
                        } else {
                            (200, r#"{"data":[{"embedding":[0.1,0.2]}]}"#)
                        };
                        let mut res = http::Response::new(Full::new(Bytes::from(body)));
                        *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((url, hits))
}

/// One embeddings call through the stack; returns the status and body.
pub async fn run(url: &str) -> Result<(u16, String), BoxError> {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig::default());
    let retries = RetryConfig {
        base_delay: Duration::from_millis(50),
        ..RetryConfig::default()
    };
    let mut stack = ServiceBuilder::new()
        .request_id()
        .circuit_breaker_with(breaker, HttpClassifier)
        // Embeddings POSTs are safe to repeat: replay them after any transient
        // failure, not only after a refused connection (a `reqwest::Request`
        // has no extensions to carry an `Idempotent` mark).
        .layer(
            RetryLayer::new(retries)
                .classifier(HttpClassifier)
                .replay(Replay::Always),
        )
        .attempt_timeout(Duration::from_secs(10))
        .service(reqwest::Client::new());

    let mut request = reqwest::Request::new(
        reqwest::Method::POST,
        format!("{url}/v1/embeddings").parse()?,
    );
    *request.body_mut() = Some(reqwest::Body::from(r#"{"input":"hello"}"#));
    let response = stack.ready().await?.call(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (url, hits) = start_server(2).await?;
    let (status, body) = run(&url).await?;
    println!(
        "{status} after {} attempts: {body}",
        hits.load(Ordering::SeqCst)
    );
    Ok(())
}
