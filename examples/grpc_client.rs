//! The whole stack over a tonic `Channel`, for any generated gRPC client.
//!
//! ```text
//! StatusLayer        errors of the layers as gRPC codes (open circuit: UNAVAILABLE)
//! RequestIdLayer     one x-request-id per call, on every attempt
//! CircuitBreaker     GrpcClassifier: grpc-status in headers or trailers
//! RetryLayer         GrpcClassifier: UNAVAILABLE retried, RESOURCE_EXHAUSTED after its pushback
//! TimeoutLayer       each attempt bounded, and told to the server as grpc-timeout
//! Channel            tonic's HTTP/2 connection
//! ```
//!
//! The request body (`tonic::body::Body`) needs no adapter: the retry layer
//! keeps it as it is sent, up to `RetryConfig::max_replay_bytes`.
//!
//! `cargo run --example grpc_client --features tonic` starts a health server
//! of its own on a loopback port that answers UNAVAILABLE twice, then calls it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use stache_resilience::classify::GrpcClassifier;
use stache_resilience::grpc::StatusLayer;
use stache_resilience::retry::RetryConfig;
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, ServiceBuilderExt};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_health::server::{HealthReporter, HealthService};
use tower::ServiceBuilder;

/// A health server that answers UNAVAILABLE (in the headers, as a server
/// failing a call at once does) to its first `failures` calls.
#[derive(Clone)]
pub struct Flaky {
    failures: u32,
    calls: Arc<AtomicU32>,
    health: HealthServer<HealthService>,
}

impl tonic::server::NamedService for Flaky {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl tower::Service<http::Request<Body>> for Flaky {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut health = self.health.clone();
        let failures = self.failures;
        Box::pin(async move {
            if n < failures {
                let unavailable = tonic::Status::unavailable("warming up");
                return Ok(unavailable.into_http());
            }
            tower::Service::call(&mut health, req).await
        })
    }
}

/// Starts the flaky health server on a loopback port; returns its address and
/// its call counter.
pub async fn start_server(failures: u32) -> std::io::Result<(String, Arc<AtomicU32>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let reporter = HealthReporter::new();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = Flaky {
        failures,
        calls: calls.clone(),
        health: HealthServer::new(HealthService::from_health_reporter(reporter)),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(flaky)
            .serve_with_incoming(incoming),
    );
    Ok((url, calls))
}

/// One health check through the whole stack; returns the status the server
/// gave and the breaker, to look at.
pub async fn run(url: String) -> Result<(ServingStatus, CircuitBreaker), tonic::Status> {
    let channel: Channel = Endpoint::from_shared(url)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let breaker = CircuitBreaker::new(CircuitBreakerConfig::default());
    let retries = RetryConfig {
        base_delay: Duration::from_millis(50),
        ..RetryConfig::default()
    };
    let stack = ServiceBuilder::new()
        .layer(StatusLayer)
        .request_id()
        .circuit_breaker_with(breaker.clone(), GrpcClassifier::default())
        .resilient_retry_with(retries, GrpcClassifier::default())
        .attempt_timeout(Duration::from_secs(5))
        .service(channel);
    let mut health = HealthClient::new(stack);
    let answer = health.check(HealthCheckRequest::default()).await?;
    Ok((answer.into_inner().status(), breaker))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, calls) = start_server(2).await?;
    let (status, breaker) = run(url).await?;
    println!(
        "health: {status:?} after {} attempts; circuit {:?}",
        calls.load(Ordering::SeqCst),
        breaker.state()
    );
    Ok(())
}
