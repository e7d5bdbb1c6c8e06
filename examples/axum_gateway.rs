//! An axum gateway whose handler calls a provider through the registry.
//!
//! * `RequestIdLayer` on the router keeps each incoming request's valid
//!   `x-request-id`, or makes an 8-character one, and echoes it on the response.
//! * The layer makes that ID current while the handler runs, so the provider
//!   call inherits it with no code in the handler: one ID appears in the
//!   gateway's logs (the router's `request` span), the client's logs, and the
//!   upstream's logs.
//! * `/health` exposes the provider's breaker state and stats; an open circuit
//!   turns into `503 Service Unavailable` for the gateway's own callers.
//!
//! `cargo run --example axum_gateway` starts an upstream stand-in and the gateway
//! on loopback, sends a few requests through it, and prints both sides' logs.
//! `UPSTREAM_URL` points the gateway at a real embedding service instead.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use stache_resilience::{HttpClient, HttpClientConfig, RequestIdLayer, ServiceRegistry};

/// The header the request ID travels in, both ways.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    provider: HttpClient,
}

async fn embed(
    State(app): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (StatusCode, String)> {
    // Inside the router's `request` span, which carries the request ID.
    tracing::info!("forwarding an embedding request to the provider");
    // No `.request_id()`: the call inherits the ID `RequestIdLayer` made current.
    match app.provider.post("/api/embed", &body).await {
        Ok(response) => {
            let value = response
                .json::<Value>()
                .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
            Ok(Json(value))
        }
        Err(e) if e.is_circuit_open() => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e) => Err((StatusCode::BAD_GATEWAY, format!("provider failed: {e}"))),
    }
}

async fn health(State(app): State<AppState>) -> Json<Value> {
    let stats = app.provider.stats();
    Json(json!({
        "provider": app.provider.provider(),
        "breaker": stats.circuit_breaker_state.as_str(),
        "requests": stats.requests,
        "failures": stats.failures,
        "rejected": stats.rejected,
    }))
}

/// The gateway's routes, with request IDs kept or made, echoed, and passed on
/// to the provider calls the handlers make.
pub fn router(provider: HttpClient) -> Router {
    Router::new()
        .route("/embed", post(embed))
        .route("/health", get(health))
        .with_state(AppState { provider })
        .layer(RequestIdLayer::new())
}

/// Serves `router` on 127.0.0.1:0; returns the address.
pub async fn serve(router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

/// An upstream stand-in: logs the request ID it received and answers one
/// vector per input.
pub async fn upstream() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let id = req
                            .headers()
                            .get(X_REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned();
                        tracing::info!(request_id = %id, "upstream: embedding request received");
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let inputs = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["input"].as_array().map(Vec::len))
                            .unwrap_or(0);
                        let vectors: Vec<[f32; 2]> = (0..inputs).map(|i| [i as f32, 1.0]).collect();
                        let answer = json!({ "embeddings": vectors, "request_id": id }).to_string();
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(answer))))
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,stache_resilience=debug".into()),
        )
        .with_target(false)
        .without_time()
        .init();
    let upstream_url = match std::env::var("UPSTREAM_URL") {
        Ok(url) => url,
        Err(_) => upstream().await?,
    };
    let provider =
        ServiceRegistry::global().get_client("ollama", HttpClientConfig::ollama(upstream_url))?;
    let addr = serve(router(provider)).await?;
    println!("gateway on http://{addr}");

    // A plain client calls the gateway, once with its own ID and once without.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    for id in [Some("caller-trace-42"), None] {
        let mut req = hyper::Request::post(format!("http://{addr}/embed"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"model":"m","input":["a","b"]}"#,
            )))?;
        if let Some(id) = id {
            req.headers_mut()
                .insert(X_REQUEST_ID, http::HeaderValue::from_static(id));
        }
        let res = client.request(req).await?;
        let echoed = res.headers().get(X_REQUEST_ID).cloned();
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "gateway answered (x-request-id {echoed:?}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    let res = client.get(format!("http://{addr}/health").parse()?).await?;
    let body = res.into_body().collect().await?.to_bytes();
    println!("health: {}", String::from_utf8_lossy(&body));
    Ok(())
}
