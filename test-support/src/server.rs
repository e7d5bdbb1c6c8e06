//! Loopback servers: a bare accept loop ([`Loopback`]) that any test can give a
//! per-connection handler (raw bytes, TLS, hyper), and a scripted HTTP/1 server
//! ([`Server`]) that records what it was sent. Every one binds 127.0.0.1 port 0
//! and stops when dropped.

use std::future::Future;
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
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A listener on 127.0.0.1, port chosen by the system.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

/// A loopback port that refuses connections for as long as this value lives: a
/// socket is bound to it but never listens, so the port cannot be handed to
/// another test meanwhile (as a port freed by a dropped listener could be).
#[derive(Debug)]
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ClosedPort {
    /// Binds a loopback port without listening on it.
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind("127.0.0.1:0".parse().expect("a loopback address"))
            .expect("bind a loopback port");
        let port = socket.local_addr().expect("local address").port();
        ClosedPort {
            _socket: socket,
            port,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

/// An accept loop on a loopback listener that hands each connection to a
/// handler of its own task; counts connections; stops accepting when dropped.
pub struct Loopback {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl Loopback {
    /// Serves `listener`, running `handle(stream)` on a task per connection.
    pub fn serve<F, Fut>(listener: TcpListener, handle: F) -> Loopback
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                // No Nagle delay: with the client's delayed ACK, a small
                // write after another on a reused connection would wait 40 ms
                // of real time in which a paused clock jumps to its next
                // timer (an attempt's timeout).
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream));
            }
        });
        Loopback {
            addr,
            connections,
            task: Some(task),
        }
    }

    /// Binds a loopback port and serves it; see [`serve`](Self::serve).
    pub async fn start<F, Fut>(handle: F) -> Loopback
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Loopback::serve(bind().await, handle)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting and waits until the listener is closed, so that a connect
    /// made afterwards is refused (connections already handed out go on).
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Loopback {
    /// Stops accepting; the listener closes soon after (see
    /// [`shutdown`](Loopback::shutdown) to wait for it).
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Serves HTTP/1 on one connection (plain TCP, TLS, anything) until it closes.
pub async fn http1<IO, S, B>(io: IO, service: S)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Reads one request's head and its `Content-Length` body from a raw stream.
/// `None` when the peer closed first.
pub async fn read_request<IO: AsyncRead + Unpin>(stream: &mut IO) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if request.len() >= head_end + 4 + length {
                return Some(request);
            }
        }
    }
}

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
    /// Sends the head and `first`, then breaks the connection mid-body.
    Break { status: u16, first: Bytes },
    /// Sends the chunks, each after `gap`, then ends.
    Chunks {
        status: u16,
        chunks: Vec<Bytes>,
        gap: Duration,
    },
    /// Waits `after`, then answers as `reply` says (a late head).
    Late { after: Duration, reply: Box<Reply> },
    /// Sends the head, then each chunk after its own wait, then ends as
    /// `end` says.
    Timed {
        status: u16,
        headers: Vec<(&'static str, String)>,
        chunks: Vec<(Duration, Bytes)>,
        end: End,
    },
}

/// How a [`Reply::Timed`] body ends after its last chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Cleanly.
    Finish,
    /// It never does: the body stalls.
    Stall,
    /// The connection breaks.
    Break,
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
    /// The query string as sent (without `?`), or empty.
    pub query: String,
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
    loopback: Loopback,
}

impl Server {
    pub async fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Server {
        Server::serve(bind().await, Arc::new(script))
    }

    /// Answers every request with the replies in order; the last one repeats.
    pub async fn replies(replies: Vec<Reply>) -> Server {
        Server::start(move |n, _| replies[n.min(replies.len() - 1)].clone()).await
    }

    pub fn serve(listener: TcpListener, script: Arc<Script>) -> Server {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = seen.clone();
        let loopback = Loopback::serve(listener, move |stream| {
            let (seen, script) = (recorded.clone(), script.clone());
            http1(
                stream,
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, script) = (seen.clone(), script.clone());
                    async move { answer(req, &seen, &*script).await }
                }),
            )
        });
        Server {
            addr: loopback.addr,
            seen,
            loopback,
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
        self.loopback.connections()
    }

    /// Stops accepting and waits until the listener is closed.
    pub async fn shutdown(self) {
        self.loopback.shutdown().await;
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
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    let status = |code: u16| StatusCode::from_u16(code).expect("test status");
    let mut reply = script(n, &request);
    while let Reply::Late { after, reply: late } = reply {
        tokio::time::sleep(after).await;
        reply = *late;
    }
    match reply {
        Reply::Late { .. } => unreachable!("unwrapped above"),
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
        Reply::Break {
            status: code,
            first,
        } => {
            let mut body = TestBody::full(first);
            body.break_at_end = true;
            let mut res = Response::new(body);
            *res.status_mut() = status(code);
            // A length longer than what is sent, so that the break shows.
            res.headers_mut()
                .insert("content-length", "1000000".parse().expect("header"));
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
        Reply::Timed {
            status: code,
            headers,
            chunks,
            end,
        } => {
            let mut res = Response::new(TestBody::timed(chunks, end));
            *res.status_mut() = status(code);
            for (name, value) in headers {
                res.headers_mut()
                    .append(name, value.parse().expect("header"));
            }
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
    break_at_end: bool,
    gap: Duration,
    /// Each chunk's own wait, when they differ (front first).
    waits: std::collections::VecDeque<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TestBody {
    pub fn full(body: Bytes) -> Self {
        TestBody {
            chunks: [body].into(),
            stall_at_end: false,
            break_at_end: false,
            gap: Duration::ZERO,
            waits: Default::default(),
            sleep: None,
        }
    }
    pub fn stall(first: Bytes) -> Self {
        TestBody {
            chunks: [first].into(),
            stall_at_end: true,
            break_at_end: false,
            gap: Duration::ZERO,
            waits: Default::default(),
            sleep: None,
        }
    }
    pub fn chunks(chunks: Vec<Bytes>, gap: Duration) -> Self {
        TestBody {
            chunks: chunks.into(),
            stall_at_end: false,
            break_at_end: false,
            gap,
            waits: Default::default(),
            sleep: None,
        }
    }
    /// Each chunk after its own wait, then the end `end` says.
    pub fn timed(chunks: Vec<(Duration, Bytes)>, end: End) -> Self {
        let (waits, chunks): (Vec<Duration>, Vec<Bytes>) = chunks.into_iter().unzip();
        TestBody {
            chunks: chunks.into(),
            stall_at_end: end == End::Stall,
            break_at_end: end == End::Break,
            gap: Duration::ZERO,
            waits: waits.into(),
            sleep: None,
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let wait = self.waits.front().copied().unwrap_or(self.gap);
        if !wait.is_zero() && !self.chunks.is_empty() {
            let gap = wait;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        self.waits.pop_front();
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None if self.stall_at_end => Poll::Pending,
            None if self.break_at_end => {
                // Wait a moment first, so that hyper flushes what was sent.
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(std::io::Error::other("breaking the body"))))
            }
            None => Poll::Ready(None),
        }
    }
}
