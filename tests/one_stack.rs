//! One fault script (503s, a reset, a 429 with `Retry-After`, a stream cut
//! before its first line, a call that opens the circuit and one the open
//! circuit refuses) run through `HttpClient` and through the crate's public
//! layers composed over hyper-util's client: both make the same attempts with
//! the same request IDs, end each call the same way, and report the same
//! stats and metrics.
#![cfg(feature = "metrics")]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::classify::HttpClassifier;
use stache_resilience::hedge::HedgeLayer;
use stache_resilience::pool::PoolLimitLayer;
use stache_resilience::rate_limit::{RateLimitLayer, RateLimiter};
use stache_resilience::read_ahead::{ExpectStream, ReadAheadLayer};
use stache_resilience::retry::Jitter;
use stache_resilience::timeout::TimeoutLayer;
use stache_resilience::{
    BoxError, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, ErrorKind, HttpClient,
    HttpClientConfig, RequestIdLayer, RetryConfig, RetryLayer,
};
use support::{Reply, Server};
use tower::{ServiceBuilder, ServiceExt};

const PROVIDER: &str = "scripted";
const RETRIES: u32 = 2;
const BACKOFF: Duration = Duration::from_millis(1);
const MAX_DELAY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(30);
const SLOTS: usize = 100;
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
const OPEN_FOR: Duration = Duration::from_secs(60);

/// The calls of the script: a path, the ID the caller gives (none: a new
/// one), whether the answer is a stream.
const CALLS: [(&str, Option<&str>, bool); 6] = [
    ("/a", Some("call-a"), false), // 503, 503, 200
    ("/b", None, false),           // reset, 200
    ("/c", Some("call-c"), false), // 429 Retry-After: 1, 200
    ("/d", Some("call-d"), true),  // 200 cut before its first line, 200 stream
    ("/e", Some("call-e"), false), // 500 three times: the circuit opens
    ("/f", Some("call-f"), false), // refused by the open circuit
];

fn script() -> Vec<Reply> {
    vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, "a"),
        Reply::Drop,
        Reply::json(200, "b"),
        Reply::Full {
            status: 429,
            headers: vec![("retry-after", "1".into())],
            body: Bytes::new(),
        },
        Reply::json(200, "c"),
        Reply::Break {
            status: 200,
            first: Bytes::new(),
        },
        Reply::Chunks {
            status: 200,
            chunks: vec![Bytes::from_static(b"data: d\n\n")],
            gap: Duration::from_millis(1),
        },
        Reply::Status(500),
    ]
}

/// How a call ended: the status and body it was answered with, or the kind
/// of its error.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Answered(u16, String),
    Failed(ErrorKind),
}

/// What one run of the script left.
#[derive(Debug, PartialEq)]
struct Run {
    outcomes: Vec<Outcome>,
    /// Each request the server saw: its path and request ID (a generated ID
    /// shows as `new`, once checked to be the same on every attempt of its
    /// call and on its answer).
    seen: Vec<(String, String)>,
    attempts: u64,
    retries: u64,
    throttled: u64,
    state: CircuitState,
    /// The layers' series, by name and labels.
    metrics: BTreeMap<String, String>,
}

/// Runs `run` on a fresh current-thread runtime with a debugging recorder of
/// its own, and returns its result with the series recorded.
fn recorded<F: Future>(run: impl FnOnce() -> F) -> (F::Output, BTreeMap<String, String>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let output = metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run())
    });
    let mut series = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name();
        // The series of whole calls and of the attempts' timing are the
        // client's own; every other one comes from a layer.
        if name == "stache_requests_total"
            || name == "stache_failures_total"
            || name == "stache_attempt_duration_seconds"
        {
            continue;
        }
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let value = match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => n.to_string(),
            (MetricKind::Gauge, DebugValue::Gauge(g)) => g.to_string(),
            (_, other) => format!("{other:?}"),
        };
        series.insert(format!("{name}{{{}}}", labels.join(",")), value);
    }
    (output, series)
}

/// The requests `server` saw, with generated IDs checked against `answered`
/// (the ID each call's answer named) and shown as `new`.
fn seen(server: &Server, answered: &[Option<String>]) -> Vec<(String, String)> {
    let requests = server.seen();
    requests
        .iter()
        .map(|seen| {
            let path = seen.path.clone();
            let id = seen.request_id();
            let call = CALLS.iter().position(|(p, _, _)| *p == path).unwrap();
            match CALLS[call].1 {
                Some(given) => assert_eq!(id, given, "{path}"),
                None => {
                    assert_eq!(id.len(), 8, "a generated ID: {id}");
                    assert_eq!(answered[call].as_deref(), Some(id.as_str()), "{path}");
                }
            }
            let shown = if CALLS[call].1.is_some() {
                id
            } else {
                "new".into()
            };
            (path, shown)
        })
        .collect()
}

fn client_config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = RETRIES;
    config.retry_base_delay = BACKOFF;
    config.retry_max_delay = MAX_DELAY;
    config.default_timeout = TIMEOUT;
    config.stream_idle_timeout = IDLE;
    config.max_connections = SLOTS;
    config.pool_timeout = POOL_TIMEOUT;
    config.circuit_breaker_threshold = 1;
    config.circuit_breaker_timeout = OPEN_FOR;
    config
}

async fn through_the_client() -> Run {
    let server = Server::replies(script()).await;
    let client = HttpClient::for_provider(PROVIDER, client_config(&server.url())).unwrap();
    let mut outcomes = Vec::new();
    let mut answered = Vec::new();
    for (path, id, stream) in CALLS {
        let mut request = client.get(path);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let (outcome, answer_id) = if stream {
            match request.stream().send().await {
                Ok(mut response) => {
                    let id = response.request_id().to_string();
                    let mut text = String::new();
                    while let Some(line) = response.next_line().await.unwrap() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    (
                        Outcome::Answered(response.status().as_u16(), text),
                        Some(id),
                    )
                }
                Err(e) => (failed(&e), e.request_id().map(ToString::to_string)),
            }
        } else {
            match request.send().await {
                Ok(response) => {
                    let id = response.request_id().to_string();
                    let body = String::from_utf8(response.bytes().to_vec()).unwrap();
                    (
                        Outcome::Answered(response.status().as_u16(), body),
                        Some(id),
                    )
                }
                Err(e) => (failed(&e), e.request_id().map(ToString::to_string)),
            }
        };
        outcomes.push(outcome);
        answered.push(answer_id);
    }
    let stats = client.stats();
    Run {
        outcomes,
        seen: seen(&server, &answered),
        attempts: stats.attempts,
        retries: stats.retries,
        throttled: stats.rate_limit.throttled,
        state: stats.circuit_breaker_state,
        metrics: BTreeMap::new(),
    }
}

/// A client's error as an outcome: a final status is an answer.
fn failed(error: &stache_resilience::Error) -> Outcome {
    match error.status() {
        Some(status) => Outcome::Answered(status.as_u16(), String::new()),
        None => Outcome::Failed(error.kind()),
    }
}

async fn through_the_layers() -> Run {
    let server = Server::replies(script()).await;
    let breaker = CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 1,
        timeout: OPEN_FOR,
        ..CircuitBreakerConfig::default()
    })
    .provider(PROVIDER)
    .build()
    .unwrap();
    let retry = RetryLayer::new(RetryConfig {
        max_retries: RETRIES,
        base_delay: BACKOFF,
        max_delay: MAX_DELAY,
        jitter: Jitter::Symmetric,
        total_timeout: None,
        max_replay_bytes: 1 << 20,
    })
    .provider(PROVIDER)
    .classifier(HttpClassifier);
    let stats = retry.stats();
    let limiter = RateLimiter::new()
        .with_max_wait(MAX_DELAY)
        .provider(PROVIDER);
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new().provider(PROVIDER))
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
        .layer(retry)
        .layer(HedgeLayer::off())
        .layer(RateLimitLayer::new(limiter.clone()))
        .layer(ReadAheadLayer::new(IDLE).only_marked())
        .layer(TimeoutLayer::new(TIMEOUT))
        .layer(PoolLimitLayer::new(SLOTS, POOL_TIMEOUT))
        .service(support::hyper_client::<Full<Bytes>>());
    let mut outcomes = Vec::new();
    let mut answered = Vec::new();
    for (path, id, stream) in CALLS {
        let mut request = http::Request::get(format!("{}{path}", server.url()));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let mut request = request.body(Full::new(Bytes::new())).unwrap();
        if stream {
            request.extensions_mut().insert(ExpectStream);
        }
        let result: Result<_, BoxError> = stack.clone().oneshot(request).await;
        let (outcome, answer_id) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let id = response.headers()["x-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let mut text = String::from_utf8(body.to_vec()).unwrap();
                if stream {
                    // As the client's line reader gives it: lines, blank
                    // separators skipped.
                    text = text
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| format!("{l}\n"))
                        .collect();
                }
                if status >= 400 {
                    text.clear();
                }
                (Outcome::Answered(status, text), Some(id))
            }
            Err(e) => (Outcome::Failed(ErrorKind::of(&*e).unwrap()), None),
        };
        outcomes.push(outcome);
        answered.push(answer_id);
    }
    Run {
        outcomes,
        seen: seen(&server, &answered),
        attempts: stats.attempts(),
        retries: stats.retries(),
        throttled: limiter.stats().throttled,
        state: breaker.state(),
        metrics: BTreeMap::new(),
    }
}

#[test]
fn the_client_and_the_public_layers_over_hyper_util_run_a_fault_script_alike() {
    let (mut client, client_metrics) = recorded(through_the_client);
    client.metrics = client_metrics;
    let (mut layers, layer_metrics) = recorded(through_the_layers);
    layers.metrics = layer_metrics;

    // What the script must give, whichever stack runs it.
    assert_eq!(
        client.outcomes,
        vec![
            Outcome::Answered(200, "a".into()),
            Outcome::Answered(200, "b".into()),
            Outcome::Answered(200, "c".into()),
            Outcome::Answered(200, "data: d\n".into()),
            Outcome::Answered(500, String::new()),
            Outcome::Failed(ErrorKind::CircuitOpen),
        ]
    );
    let paths: Vec<&str> = client.seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/a", "/a", "/a", "/b", "/b", "/c", "/c", "/d", "/d", "/e", "/e", "/e"
        ],
        "no stage tried more than max_retries + 1 times; the refused call sent nothing"
    );
    assert_eq!((client.attempts, client.retries), (12, 7));
    assert_eq!(client.throttled, 1);
    assert_eq!(client.state, CircuitState::Open);
    let metric = |name: &str| client.metrics.get(name).map(String::as_str);
    assert_eq!(
        metric("stache_attempts_total{provider=scripted}"),
        Some("12")
    );
    assert_eq!(metric("stache_retries_total{provider=scripted}"), Some("7"));
    assert_eq!(
        metric("stache_breaker_transitions_total{provider=scripted,to=open}"),
        Some("1")
    );
    assert_eq!(
        metric("stache_breaker_rejections_total{provider=scripted}"),
        Some("1")
    );
    assert_eq!(metric("stache_breaker_state{provider=scripted}"), Some("1"));
    assert_eq!(
        metric("stache_rate_limit_throttled_total{provider=scripted}"),
        Some("1")
    );

    // And the two stacks alike, to the last series.
    assert_eq!(client, layers);
}
