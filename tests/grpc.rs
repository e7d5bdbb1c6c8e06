//! Feature `tonic`: the whole stack over a tonic `Channel`, against a real tonic
//! server in this process: `tonic-health`'s `HealthServer`, behind a scripted
//! front that fails a set number of calls, with the status in the headers
//! (trailers-only) or in real trailers after the headers.
#![cfg(feature = "tonic")]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::classify::GrpcClassifier;
use stache_resilience::grpc::StatusLayer;
use stache_resilience::retry::{Jitter, RetryConfig};
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, ServiceBuilderExt};
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{Service, ServiceBuilder};

/// How the front answers one call.
#[derive(Clone, Debug)]
enum Answer {
    /// A trailers-only answer: the status in the headers, no body.
    Headers(i32, Option<&'static str>),
    /// Headers without a status, then trailers that carry it.
    Trailers(i32),
    /// Waits, then passes the call on.
    Slow(Duration),
    /// Passes the call on to the health service.
    Pass,
}

/// What the front saw: each call's `x-request-id` and `grpc-timeout`.
#[derive(Default)]
struct Seen {
    ids: Vec<String>,
    timeouts: Vec<Option<String>>,
}

#[derive(Clone)]
struct Front {
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Seen>>,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl NamedService for Front {
    const NAME: &'static str = "grpc.health.v1.Health";
}

fn grpc_headers(status: Option<i32>) -> http::response::Builder {
    let builder = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    match status {
        Some(code) => builder.header("grpc-status", code.to_string()),
        None => builder,
    }
}

impl Service<http::Request<Body>> for Front {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut seen = self.seen.lock().unwrap();
        seen.ids.push(id);
        seen.timeouts.push(timeout);
        drop(seen);
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Pass);
        let mut health = self.health.clone();
        Box::pin(async move {
            match answer {
                Answer::Headers(code, pushback) => {
                    let mut builder = grpc_headers(Some(code));
                    if let Some(ms) = pushback {
                        builder = builder.header("grpc-retry-pushback-ms", ms);
                    }
                    Ok(builder.body(Body::empty()).unwrap())
                }
                Answer::Trailers(code) => {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", code.to_string().parse().unwrap());
                    trailers.insert("grpc-message", "scripted".parse().unwrap());
                    let frames = vec![Ok::<_, Infallible>(Frame::<Bytes>::trailers(trailers))];
                    let body = Body::new(StreamBody::new(Frames(frames.into_iter())));
                    Ok(grpc_headers(None).body(body).unwrap())
                }
                Answer::Slow(wait) => {
                    tokio::time::sleep(wait).await;
                    health.call(req).await
                }
                Answer::Pass => health.call(req).await,
            }
        })
    }
}

/// A stream over a vector of frames.
struct Frames<T>(std::vec::IntoIter<T>);

impl<T: Unpin> futures_core::Stream for Frames<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
        Poll::Ready(self.0.next())
    }
}

/// A tonic server on a loopback port, stopped when dropped.
struct GrpcServer {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcServer {
    async fn start(script: Vec<Answer>) -> GrpcServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(
            listener,
            Arc::new(Mutex::new(script.into())),
            Arc::default(),
        )
        .await
    }

    async fn on(
        listener: tokio::net::TcpListener,
        script: Arc<Mutex<VecDeque<Answer>>>,
        seen: Arc<Mutex<Seen>>,
    ) -> GrpcServer {
        let addr = listener.local_addr().unwrap();
        let reporter = tonic_health::server::HealthReporter::new();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter),
        );
        let front = Front {
            script: script.clone(),
            seen: seen.clone(),
            health,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(front)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        GrpcServer {
            addr,
            script,
            seen,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits until its port is closed.
    async fn kill(mut self) -> (SocketAddr, Arc<Mutex<VecDeque<Answer>>>, Arc<Mutex<Seen>>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A graceful stop sends GOAWAY on the open connections and ends when
        // they have closed: after it, nothing listens or answers on the port.
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops")
            .expect("the server task ends cleanly");
        (self.addr, self.script.clone(), self.seen.clone())
    }

    fn ids(&self) -> Vec<String> {
        self.seen.lock().unwrap().ids.clone()
    }

    fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn retries() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(500),
        jitter: Jitter::Symmetric,
        ..RetryConfig::default()
    }
}

fn breaker(threshold: u32) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: threshold,
        timeout: Duration::from_secs(60),
        ..CircuitBreakerConfig::default()
    })
}

/// StatusLayer -> RequestId -> CircuitBreaker -> Retry -> Timeout -> Channel,
/// as a tonic client.
fn client(
    channel: Channel,
    breaker: &CircuitBreaker,
    attempt_timeout: Duration,
) -> HealthClient<
    impl tonic::client::GrpcService<
        Body,
        Error = tonic::Status,
        ResponseBody = Body,
        Future = impl Send,
    > + Clone,
> {
    let stack = ServiceBuilder::new()
        .layer(StatusLayer)
        .request_id()
        .circuit_breaker_with(breaker.clone(), GrpcClassifier::default())
        .resilient_retry_with(retries(), GrpcClassifier::default())
        .attempt_timeout(attempt_timeout)
        .service(channel);
    HealthClient::new(stack)
}

async fn check<T>(client: &mut HealthClient<T>) -> Result<ServingStatus, tonic::Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<stache_resilience::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<stache_resilience::BoxError> + Send,
{
    let answer = client.check(HealthCheckRequest::default()).await?;
    Ok(answer.into_inner().status())
}

#[tokio::test]
async fn unavailable_in_the_headers_is_retried_with_one_request_id() {
    let server =
        GrpcServer::start(vec![Answer::Headers(14, None), Answer::Headers(14, None)]).await;
    let breaker = breaker(5);
    let mut client = client(server.channel(), &breaker, Duration::from_secs(5));
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    let ids = server.ids();
    assert_eq!(ids.len(), 3, "two UNAVAILABLE, then the health service");
    assert!(!ids[0].is_empty());
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one ID on every attempt: {ids:?}"
    );
    let stats = breaker.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!(stats.failure_count, 0, "the success reset the count");
}

#[tokio::test]
async fn unavailable_in_the_trailers_is_not_retried_and_opens_the_breaker() {
    let server = GrpcServer::start(vec![Answer::Trailers(14), Answer::Trailers(14)]).await;
    let breaker = breaker(2);
    let mut client = client(server.channel(), &breaker, Duration::from_secs(5));
    for n in 1..=2 {
        let status = check(&mut client).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "scripted");
        assert_eq!(
            server.ids().len(),
            n,
            "committed after the headers: no retry"
        );
    }
    assert_eq!(breaker.stats().state, CircuitState::Open);
    // The open circuit answers for the server, as gRPC's UNAVAILABLE.
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "Circuit breaker OPEN - rejecting request");
    assert_eq!(server.ids().len(), 2, "nothing reached the server");
}

#[tokio::test]
async fn failures_in_the_headers_open_the_breaker_and_final_codes_do_not() {
    // INTERNAL is a failure but is not retried; NOT_FOUND is the caller's.
    let server = GrpcServer::start(vec![
        Answer::Headers(5, None),
        Answer::Headers(13, None),
        Answer::Headers(13, None),
    ])
    .await;
    let breaker = breaker(2);
    let mut client = client(server.channel(), &breaker, Duration::from_secs(5));
    assert_eq!(
        check(&mut client).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(breaker.stats().failure_count, 0);
    assert_eq!(
        check(&mut client).await.unwrap_err().code(),
        tonic::Code::Internal
    );
    assert_eq!(
        check(&mut client).await.unwrap_err().code(),
        tonic::Code::Internal
    );
    assert_eq!(server.ids().len(), 3, "none of them retried");
    assert_eq!(breaker.stats().state, CircuitState::Open);
}

#[tokio::test]
async fn resource_exhausted_waits_for_its_pushback_and_a_negative_one_stops() {
    let server = GrpcServer::start(vec![
        Answer::Headers(8, Some("200")),
        Answer::Headers(8, Some("-1")),
        Answer::Headers(8, None),
    ])
    .await;
    let breaker = breaker(1);
    let mut client = client(server.channel(), &breaker, Duration::from_secs(5));
    let started = Instant::now();
    // 200 ms pushback, then the negative one: two attempts, and the call
    // fails with the server's code.
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.ids().len(), 2);
    // No pushback: not retried either.
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(server.ids().len(), 3);
    // Throttling is neutral for the breaker, even at a threshold of one.
    assert_eq!(breaker.stats().state, CircuitState::Closed);
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn a_timeout_is_deadline_exceeded_and_sends_grpc_timeout() {
    let server = GrpcServer::start(vec![Answer::Slow(Duration::from_secs(30)); 4]).await;
    let breaker = breaker(10);
    let mut client = client(server.channel(), &breaker, Duration::from_millis(100));
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    // A gRPC call is a POST: once sent, the server may have acted on it, so a
    // timed-out attempt is not sent again.
    assert_eq!(server.ids().len(), 1);
    // The server was told the limit: 100 ms, in gRPC's units.
    let timeouts = server.seen.lock().unwrap().timeouts.clone();
    assert_eq!(timeouts, [Some("100000u".to_string())]);
}

#[tokio::test]
async fn a_server_killed_and_restarted_on_the_same_port_is_reached_again() {
    let server = GrpcServer::start(vec![]).await;
    let breaker = breaker(2);
    let mut client = client(server.channel(), &breaker, Duration::from_secs(5));
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);

    let (addr, script, seen) = server.kill().await;
    // Down: the connection is refused on every attempt, then the circuit opens.
    for _ in 0..2 {
        let status = check(&mut client).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    assert_eq!(breaker.stats().state, CircuitState::Open);
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.message(), "Circuit breaker OPEN - rejecting request");

    // Back on the same port; the circuit closed by hand (its timeout is long).
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = GrpcServer::on(listener, script, seen).await;
    breaker.reset();
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(server.ids().len(), 2, "one call before, one after");
}

#[tokio::test]
async fn a_retry_the_budget_refuses_is_resource_exhausted() {
    use stache_resilience::RetryLayer;
    use stache_resilience::retry::RetryBudget;
    let server = GrpcServer::start(vec![Answer::Headers(14, None); 2]).await;
    // A budget with nothing banked and nothing earned: no retry at all.
    let budget = Arc::new(RetryBudget::new(0.0, 0, 0));
    let stack = ServiceBuilder::new()
        .layer(StatusLayer)
        .request_id()
        .layer(
            RetryLayer::new(retries())
                .classifier(GrpcClassifier::default())
                .budget(budget),
        )
        .service(server.channel());
    let mut client = HealthClient::new(stack);
    let status = check(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("retry budget exhausted")
            && status.message().contains("Unavailable"),
        "{}",
        status.message()
    );
    assert_eq!(server.ids().len(), 1, "the retry was refused");
    // The next call, whose first attempt succeeds, is not touched.
    server.script.lock().unwrap().clear();
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
}
