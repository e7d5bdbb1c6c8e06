//! Fixtures shared by every test of stache-resilience, unit and integration
//! alike: log capture that sees only its own test ([`capture`]), loopback
//! servers ([`server`]), a scripted LLM streaming server ([`llm`]), real nginx and redis-server ([`nginx`], [`redis`]), and the one-line ways to call a tower service.
#![forbid(unsafe_code)]

pub mod capture;
pub mod debian;
pub mod llm;
pub mod nginx;
pub mod redis;
pub mod server;

use tower_service::Service;

pub use capture::{Capture, Captured};
pub use server::{End, Loopback, Reply, Seen, Server, TestBody};

/// Waits for `service` to be ready, then calls it with `request`: tower's
/// ready-then-call, for tests. Panics if the service fails to become ready.
pub async fn call<S, R>(service: &mut S, request: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .expect("the service failed to become ready");
    service.call(request).await
}

/// [`call`], expecting success.
pub async fn call_ok<S, R>(service: &mut S, request: R) -> S::Response
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    call(service, request).await.expect("the call failed")
}

/// [`call`], expecting an error.
pub async fn call_err<S, R>(service: &mut S, request: R) -> S::Error
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    match call(service, request).await {
        Ok(_) => panic!("the call succeeded"),
        Err(e) => e,
    }
}

/// A hyper-util client over plain TCP, for tests of the bare layers.
pub fn hyper_client<B>()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}
