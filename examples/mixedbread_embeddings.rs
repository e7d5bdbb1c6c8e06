//! A cloud embedding provider with a Bearer key: the `mixedbread` preset
//! (60 s timeout, a breaker that opens after 10 failures), and the key kept out
//! of every log line and `Debug` output.
//!
//! `cargo run --example mixedbread_embeddings` starts a loopback server that
//! speaks the `/embeddings` API and checks the key;
//! `MIXEDBREAD_API_KEY=... cargo run --example mixedbread_embeddings` calls the
//! real API at https://api.mixedbread.com/v1.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use stache_resilience::{HttpClient, HttpClientConfig, ServiceRegistry};

#[derive(Deserialize)]
struct Embeddings {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
}

pub struct MixedbreadEmbeddings {
    client: HttpClient,
}

impl MixedbreadEmbeddings {
    /// `base_url` replaces the preset's only to point at a test server.
    pub fn new(
        registry: &ServiceRegistry,
        api_key: &str,
        base_url: Option<&str>,
    ) -> Result<Self, stache_resilience::Error> {
        let mut config = HttpClientConfig::mixedbread(api_key);
        if let Some(url) = base_url {
            config.base_url = url.to_owned();
        }
        // Safe to log: the Authorization value prints as [redacted].
        tracing::info!(?config, "configuring the mixedbread provider");
        let client = registry.get_client("mixedbread", config)?;
        Ok(MixedbreadEmbeddings { client })
    }

    pub async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, stache_resilience::Error> {
        let body = json!({ "model": "mixedbread-ai/mxbai-embed-large-v1", "input": texts });
        let response: Embeddings = self.client.post("/embeddings", &body).await?.json()?;
        Ok(response
            .data
            .into_iter()
            .map(|item| item.embedding)
            .collect())
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }
}

/// A loopback stand-in for the API: 401 unless the Bearer key is `expected_key`.
pub async fn fake_mixedbread(expected_key: &'static str) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let authorized = req.headers().get("authorization").is_some_and(|v| {
                            v.as_bytes() == format!("Bearer {expected_key}").as_bytes()
                        });
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
                        let (status, answer) = if authorized {
                            let data: Vec<_> = (0..inputs)
                                .map(|i| json!({ "embedding": [i as f32, 0.25] }))
                                .collect();
                            (200, json!({ "data": data }).to_string())
                        } else {
                            (401, r#"{"error":"invalid api key"}"#.to_owned())
                        };
                        let mut res = hyper::Response::new(Full::new(Bytes::from(answer)));
                        *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                        Ok::<_, Infallible>(res)
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
    let (key, url) = match std::env::var("MIXEDBREAD_API_KEY") {
        Ok(key) => (key, None),
        Err(_) => (
            "sk-demo-not-a-real-key".to_owned(),
            Some(fake_mixedbread("sk-demo-not-a-real-key").await?),
        ),
    };
    let provider = MixedbreadEmbeddings::new(ServiceRegistry::global(), &key, url.as_deref())?;
    let embeddings = provider.embed(&["a cat", "a dog"]).await?;
    println!(
        "{} embeddings; the client prints as {:?}",
        embeddings.len(),
        provider.client()
    );
    Ok(())
}
