//! Fixtures shared by the integration tests: a scripted hyper server on
//! 127.0.0.1:0 and tracing capture.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server does with the n-th request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status with an empty body.
    Status(u16),
    /// A status with headers and a body.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Drop,
    /// Sends the head and `first`, then stalls forever.
    Stall { status: u16, first: Bytes },
    /// Sends the chunks, each after `gap`, then ends.
    Chunks {
        status: u16,
        chunks: Vec<Bytes>,
        gap: Duration,
    },
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn request_id(&self) -> String {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// A loopback HTTP/1 server answering by script; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        Server::serve(listener, Arc::new(script))
    }

    /// Answers every request with the replies in order; the last one repeats.
    pub async fn replies(replies: Vec<Reply>) -> Server {
        Server::start(move |n, _| replies[n.min(replies.len() - 1)].clone()).await
    }

    pub fn serve(listener: TcpListener, script: Arc<Script>) -> Server {
        let addr = listener.local_addr().expect("local addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, conns2) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns2.fetch_add(1, Ordering::SeqCst);
                let (seen, script) = (seen2.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (seen, script) = (seen.clone(), script.clone());
                        async move { answer(req, &seen, &*script).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server {
            addr,
            seen,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    script: &Script,
) -> Result<Response<TestBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    };
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    let status = |code: u16| StatusCode::from_u16(code).expect("test status");
    match script(n, &request) {
        Reply::Status(code) => Ok(with_status(code, TestBody::full(Bytes::new()))),
        Reply::Full {
            status: code,
            headers,
            body,
        } => {
            let mut res = with_status(code, TestBody::full(body));
            for (name, value) in headers {
                res.headers_mut()
                    .append(name, value.parse().expect("header"));
            }
            Ok(res)
        }
        Reply::Hang => std::future::pending().await,
        Reply::Drop => Err(std::io::Error::other("dropping the connection")),
        Reply::Stall {
            status: code,
            first,
        } => {
            let mut res = Response::new(TestBody::stall(first));
            *res.status_mut() = status(code);
            Ok(res)
        }
        Reply::Chunks {
            status: code,
            chunks,
            gap,
        } => {
            let mut res = Response::new(TestBody::chunks(chunks, gap));
            *res.status_mut() = status(code);
            Ok(res)
        }
    }
}

fn with_status(code: u16, body: TestBody) -> Response<TestBody> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(code).expect("test status");
    res
}

/// A response body that can stop part-way, or trickle chunks.
pub struct TestBody {
    chunks: std::collections::VecDeque<Bytes>,
    stall_at_end: bool,
    gap: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TestBody {
    fn full(body: Bytes) -> Self {
        TestBody {
            chunks: [body].into(),
            stall_at_end: false,
            gap: Duration::ZERO,
            sleep: None,
        }
    }
    fn stall(first: Bytes) -> Self {
        TestBody {
            chunks: [first].into(),
            stall_at_end: true,
            gap: Duration::ZERO,
            sleep: None,
        }
    }
    fn chunks(chunks: Vec<Bytes>, gap: Duration) -> Self {
        TestBody {
            chunks: chunks.into(),
            stall_at_end: false,
            gap,
            sleep: None,
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.gap.is_zero() && !self.chunks.is_empty() {
            let gap = self.gap;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None if self.stall_at_end => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// Installs a tracing subscriber that prints to the test's captured output, once.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "stache_resilience=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A hyper-util client for tests of the bare layers.
pub fn hyper_client<B>()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// Formatted log output captured in memory.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Makes this the current thread's subscriber (everything at DEBUG and up)
    /// until the guard drops.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub fn capture_logs() -> Logs {
    Logs::default()
}

/// A tracing layer that records the circuit breaker's transitions as
/// `(generation, from, to)`.
pub struct TransitionLayer(pub Arc<Mutex<Vec<(u64, String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TransitionLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            generation: Option<u64>,
            from: Option<String>,
            to: Option<String>,
        }
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "generation" {
                    self.generation = Some(value);
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "from" => self.from = Some(value.to_owned()),
                    "to" => self.to = Some(value.to_owned()),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(g), Some(from), Some(to)) = (fields.generation, fields.from, fields.to) {
            self.0.lock().unwrap().push((g, from, to));
        }
    }
}
