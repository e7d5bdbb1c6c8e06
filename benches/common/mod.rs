//! Shared by the load and allocation harnesses: a loopback server in a child
//! process (so this process's CPU time and allocations are the client's alone),
//! and the four clients compared.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use stache_resilience::{HttpClient, HttpClientConfig};
use tower::{Service, ServiceBuilder, ServiceExt};

pub const SERVER_ENV: &str = "STACHE_BENCH_SERVER";
/// The answer: 64 bytes of JSON.
pub const ANSWER: &[u8; 64] =
    br#"{"embedding":[0.125,0.25,0.5,0.75],"model":"bench","ok":true}   "#;

/// The request body, about 100 bytes of JSON once serialized.
pub fn request_body() -> serde_json::Value {
    serde_json::json!({
        "model": "nomic-embed-text",
        "input": ["the quick brown fox jumps over the lazy dog"],
        "truncate": true
    })
}

/// Pins this process's threads (those made from now on, and this one) to one
/// core, when the machine has a second one and `STACK_PIN` is not `0`: the client
/// on core 0, the server child on core 1. Otherwise the two processes share both
/// cores, and how much CPU a request costs the client depends on how the
/// scheduler happened to interleave them. Returns whether it pinned.
pub fn pin_to_core(index: usize) -> bool {
    if std::env::var("STACK_PIN").is_ok_and(|v| v == "0") {
        return false;
    }
    match core_affinity::get_core_ids() {
        Some(ids) if ids.len() >= 2 => core_affinity::set_for_current(ids[index % ids.len()]),
        _ => false,
    }
}

/// If this process is the server child, serve until killed and never return.
pub fn serve_if_child() {
    if std::env::var_os(SERVER_ENV).is_none() {
        return;
    }
    pin_to_core(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut res = hyper::Response::new(Full::new(Bytes::from_static(ANSWER)));
                        res.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(res)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    std::process::exit(0);
}

/// The server child; killed on drop.
pub struct ServerChild {
    child: Child,
    pub port: u16,
}

impl ServerChild {
    pub fn spawn() -> ServerChild {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env(SERVER_ENV, "1")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the server child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the port");
        let port = line.trim().parse().expect("a port number");
        ServerChild { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of every thread of this process so far, in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += text
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// A tower retry policy like the one a user of plain tower would write.
#[derive(Clone)]
pub struct Attempts(pub usize);

impl<B: Clone, Res, E> tower::retry::Policy<http::Request<B>, Res, E> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut http::Request<B>,
        result: &mut Result<Res, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &http::Request<B>) -> Option<http::Request<B>> {
        Some(req.clone())
    }
}

type Bare = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// The clients compared.
#[derive(Clone)]
pub enum Kind {
    Bare(Bare),
    Stache(HttpClient),
    Tower(Bare),
    Reqwest(reqwest::Client),
}

impl Kind {
    pub const NAMES: [&'static str; 4] = [
        "bare hyper-util",
        "stache HttpClient",
        "tower timeout+retry",
        "reqwest",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Bare(_) => Self::NAMES[0],
            Kind::Stache(_) => Self::NAMES[1],
            Kind::Tower(_) => Self::NAMES[2],
            Kind::Reqwest(_) => Self::NAMES[3],
        }
    }

    pub fn all(url: &str, pool: usize) -> Vec<Kind> {
        let bare = || {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(pool)
                .pool_timer(TokioTimer::new())
                .build(http)
        };
        let mut config = HttpClientConfig::new(url);
        config.max_connections = pool;
        config.max_keepalive_connections = pool;
        let stache = HttpClient::new(config).expect("valid bench config");
        let reqwest = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .build()
            .expect("reqwest client");
        vec![
            Kind::Bare(bare()),
            Kind::Stache(stache),
            Kind::Tower(bare()),
            Kind::Reqwest(reqwest),
        ]
    }

    /// One JSON POST, body read; the number of body bytes.
    pub async fn send(&self, url: &str, body: &serde_json::Value) -> usize {
        match self {
            Kind::Bare(client) => {
                let req = json_request(url, body);
                let res = client.request(req).await.expect("bare request");
                res.into_body()
                    .collect()
                    .await
                    .expect("bare body")
                    .to_bytes()
                    .len()
            }
            Kind::Stache(client) => client
                .post("/embed", body)
                .await
                .expect("stache request")
                .bytes()
                .len(),
            Kind::Tower(client) => {
                let mut svc = ServiceBuilder::new()
                    .layer(tower::retry::RetryLayer::new(Attempts(3)))
                    .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(60)))
                    .service(client.clone());
                let req = json_request(url, body);
                let res = svc
                    .ready()
                    .await
                    .expect("ready")
                    .call(req)
                    .await
                    .expect("tower request");
                res.into_body()
                    .collect()
                    .await
                    .expect("tower body")
                    .to_bytes()
                    .len()
            }
            Kind::Reqwest(client) => client
                .post(format!("{url}/embed"))
                .json(body)
                .send()
                .await
                .expect("reqwest request")
                .bytes()
                .await
                .expect("reqwest body")
                .len(),
        }
    }
}

fn json_request(url: &str, body: &serde_json::Value) -> http::Request<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).expect("json");
    http::Request::post(format!("{url}/embed"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("request")
}
