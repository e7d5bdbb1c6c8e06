//! An Ollama-style embedding provider built on the registry, with the original
//! design's batch-processing and health-check patterns:
//!
//! * texts are sent in batches of 100, each with a longer per-request timeout;
//! * an open circuit becomes the provider's own `ServiceUnavailable` error, so
//!   callers can degrade gracefully without knowing about breakers;
//! * `health_check` is a `GET /` with a 5 s timeout.
//!
//! `cargo run --example ollama_embeddings` starts a loopback server that speaks
//! Ollama's `/api/embed`; `OLLAMA_URL=http://localhost:11434 cargo run --example
//! ollama_embeddings` talks to a real Ollama (with `OLLAMA_MODEL`, default
//! `nomic-embed-text`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use stache_resilience::{HttpClient, HttpClientConfig, ServiceRegistry};

pub const BATCH_SIZE: usize = 100;

/// The provider's own errors: what its callers handle.
#[derive(Debug)]
pub enum ProviderError {
    /// The service is known to be down (its circuit is open); try later or fall back.
    ServiceUnavailable,
    /// Anything else, with the cause.
    Failed(stache_resilience::Error),
}

impl From<stache_resilience::Error> for ProviderError {
    fn from(e: stache_resilience::Error) -> Self {
        if e.is_circuit_open() {
            ProviderError::ServiceUnavailable
        } else {
            ProviderError::Failed(e)
        }
    }
}

#[derive(Serialize)]
struct EmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

pub struct OllamaEmbeddings {
    client: HttpClient,
    model: String,
}

impl OllamaEmbeddings {
    /// One shared client per provider name, from the registry; `config` is
    /// normally `HttpClientConfig::ollama(url)`.
    pub fn new(
        registry: &ServiceRegistry,
        config: HttpClientConfig,
        model: &str,
    ) -> Result<Self, stache_resilience::Error> {
        let client = registry.get_client("ollama", config)?;
        Ok(OllamaEmbeddings {
            client,
            model: model.to_owned(),
        })
    }

    /// Embeds `texts` in batches of 100, each allowed 120 s.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut embeddings = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH_SIZE) {
            let body = EmbedRequest {
                model: &self.model,
                input: batch,
            };
            let response = self
                .client
                .post("/api/embed", &body)
                .timeout(Duration::from_secs(120)) // large batches take longer
                .await?;
            embeddings.extend(response.json::<EmbedResponse>()?.embeddings);
        }
        Ok(embeddings)
    }

    /// Whether the server answers `GET /` within 5 s.
    pub async fn health_check(&self) -> bool {
        matches!(self.client.get("/").timeout(Duration::from_secs(5)).await, Ok(r) if r.status() == 200)
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }
}

/// A loopback stand-in for Ollama: `/api/embed` answers one 4-number vector per
/// input; everything answers 503 while `up` is false.
pub async fn fake_ollama(
    up: Arc<AtomicBool>,
    batches: Arc<AtomicUsize>,
) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (up, batches) = (up.clone(), batches.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (up, batches) = (up.clone(), batches.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, answer) = if !up.load(Ordering::SeqCst) {
                                (503, r#"{"error":"model is loading"}"#.to_owned())
                            } else if path == "/api/embed" {
                                batches.fetch_add(1, Ordering::SeqCst);
                                let input = serde_json::from_slice::<serde_json::Value>(&body)
                                    .ok()
                                    .and_then(|v| v["input"].as_array().map(Vec::len))
                                    .unwrap_or(0);
                                let vectors: Vec<[f32; 4]> =
                                    (0..input).map(|i| [i as f32, 0.5, -0.5, 1.0]).collect();
                                (
                                    200,
                                    serde_json::json!({ "embeddings": vectors }).to_string(),
                                )
                            } else {
                                (200, "Ollama is running".to_owned())
                            };
                            let mut res = hyper::Response::new(Full::new(Bytes::from(answer)));
                            *res.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let up = Arc::new(AtomicBool::new(true));
    let url = match std::env::var("OLLAMA_URL") {
        Ok(url) => url,
        Err(_) => fake_ollama(up.clone(), Arc::default()).await?,
    };
    let model = std::env::var("OLLAMA_MODEL").unwrap_or_else(|_| "nomic-embed-text".to_owned());
    let provider = OllamaEmbeddings::new(
        ServiceRegistry::global(),
        HttpClientConfig::ollama(url),
        &model,
    )?;

    println!("health check: {}", provider.health_check().await);
    let texts: Vec<String> = (0..250).map(|i| format!("document number {i}")).collect();
    match provider.embed(&texts).await {
        Ok(embeddings) => println!(
            "{} embeddings of {} dimensions, in batches of {BATCH_SIZE}",
            embeddings.len(),
            embeddings.first().map_or(0, Vec::len)
        ),
        Err(ProviderError::ServiceUnavailable) => println!("Ollama is unavailable; try later"),
        Err(ProviderError::Failed(e)) => println!("embedding failed: {e}"),
    }
    println!("stats: {:?}", provider.client().stats());
    Ok(())
}
