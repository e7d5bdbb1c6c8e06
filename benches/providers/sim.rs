//! The simulated provider: an OpenAI-compatible `POST /v1/chat/completions` on
//! a loopback port, failing as one scenario says. Every fault that is drawn at
//! random is drawn from the seed, the call's ID (`x-call-id`) and the attempt's
//! number within that call, so every client meets the same faults on the same
//! attempts. `POST /_start` (sent by a client once it is built) resets the
//! clock and the counters.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How the provider fails.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Every attempt between `from` and `until` (since `/_start`) gets a 503.
    Outage { from: Duration, until: Duration },
    /// This share of attempts gets a 503.
    Storm { share: f64 },
    /// A limit of `per_sec` requests a second (a bucket of `burst`): an
    /// attempt over it gets a 429 with OpenAI's headers (`retry-after-ms`,
    /// `retry-after`, `x-ratelimit-*`).
    RateLimit { per_sec: f64, burst: f64 },
    /// This share of attempts answers after `delay`.
    SlowTail { share: f64, delay: Duration },
    /// This share of attempts is accepted and never answered.
    Silent { share: f64 },
}

/// What the provider saw in one run.
#[derive(Default)]
pub struct Counts {
    pub attempts: u64,
    /// Health checks (`GET /v1/models`), counted in `attempts` too.
    pub checks: u64,
    pub per_call: HashMap<u64, u32>,
}

struct State {
    fault: Fault,
    seed: u64,
    start: Instant,
    counts: Counts,
    /// The rate limit's theoretical arrival time (GCRA), since `start`.
    tat: Duration,
}

/// A running simulator; dropped, it stops.
pub struct Sim {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sim {
    pub async fn start(fault: Fault, seed: u64) -> Sim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the simulator");
        let port = listener.local_addr().expect("simulator address").port();
        let state = Arc::new(Mutex::new(State {
            fault,
            seed,
            start: Instant::now(),
            counts: Counts::default(),
            tat: Duration::ZERO,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Sim { port, state, task }
    }

    /// The attempts seen since `/_start`.
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut self.state.lock().expect("simulator state").counts)
    }
}

/// What one attempt gets.
enum Answer {
    Ok(Duration),
    /// A success under the rate limit: its delay, the requests left now,
    /// when the bucket is full again, the limit per minute.
    Counted(Duration, u64, Duration, u64),
    Status(StatusCode),
    Limited(Duration),
    Hang,
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let call = req
        .headers()
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let _ = req.into_body().collect().await;
    if path == "/_start" {
        let mut state = state.lock().expect("simulator state");
        state.start = Instant::now();
        state.counts = Counts::default();
        state.tat = Duration::ZERO;
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    if path == "/v1/models" {
        // A health check: counted with the attempts, failing as the
        // completions do during an outage.
        let down = {
            let mut state = state.lock().expect("simulator state");
            state.counts.attempts += 1;
            state.counts.checks += 1;
            let now = state.start.elapsed();
            matches!(state.fault, Fault::Outage { from, until } if now >= from && now < until)
        };
        return Ok(match down {
            true => status(StatusCode::SERVICE_UNAVAILABLE),
            false => json(
                StatusCode::OK,
                r#"{"object":"list","data":[{"id":"gpt-sim","object":"model"}]}"#.to_owned(),
            ),
        });
    }
    if path != "/v1/chat/completions" {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    let decided = decide(&state, call.unwrap_or(u64::MAX));
    match decided {
        Answer::Ok(delay) => {
            tokio::time::sleep(delay).await;
            Ok(completion())
        }
        Answer::Counted(delay, left, reset, limit) => {
            tokio::time::sleep(delay).await;
            let mut res = completion();
            let headers = res.headers_mut();
            let mut put = |name: &'static str, value: String| {
                if let Ok(value) = http::HeaderValue::try_from(value) {
                    headers.insert(name, value);
                }
            };
            put("x-ratelimit-limit-requests", limit.to_string());
            put("x-ratelimit-remaining-requests", left.to_string());
            put(
                "x-ratelimit-reset-requests",
                format!("{}ms", reset.as_millis().max(1)),
            );
            Ok(res)
        }
        Answer::Status(code) => Ok(status(code)),
        Answer::Limited(wait) => Ok(limited(wait)),
        Answer::Hang => std::future::pending().await,
    }
}

fn decide(state: &Mutex<State>, call: u64) -> Answer {
    let mut state = state.lock().expect("simulator state");
    let now = state.start.elapsed();
    state.counts.attempts += 1;
    let attempt = {
        let n = state.counts.per_call.entry(call).or_insert(0);
        *n += 1;
        *n
    };
    let draw = unit(state.seed, call, attempt);
    // An ordinary answer takes 20 to 60 ms.
    let normal =
        Duration::from_millis(20 + (unit(state.seed ^ 0x5eed, call, attempt) * 40.0) as u64);
    match state.fault {
        Fault::Outage { from, until } if now >= from && now < until => {
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE)
        }
        Fault::Outage { .. } => Answer::Ok(normal),
        Fault::Storm { share } if draw < share => Answer::Status(StatusCode::SERVICE_UNAVAILABLE),
        Fault::Storm { .. } => Answer::Ok(normal),
        Fault::RateLimit { per_sec, burst } => {
            // GCRA: an attempt conforms when the theoretical arrival time is
            // no more than the burst's worth of intervals ahead of now.
            let interval = Duration::from_secs_f64(1.0 / per_sec);
            let tolerance = interval.mul_f64(burst - 1.0);
            let tat = state.tat.max(now);
            if tat > now + tolerance {
                Answer::Limited(tat - tolerance - now)
            } else {
                state.tat = tat + interval;
                // OpenAI reports the limit on every answer: how many more fit
                // now, and when the bucket is full again.
                let ahead = state.tat.saturating_sub(now);
                let left = ((tolerance + interval).as_secs_f64() - ahead.as_secs_f64())
                    / interval.as_secs_f64();
                Answer::Counted(
                    normal,
                    left.max(0.0).floor() as u64,
                    ahead,
                    (per_sec * 60.0) as u64,
                )
            }
        }
        Fault::SlowTail { share, delay } if draw < share => Answer::Ok(delay),
        Fault::SlowTail { .. } => Answer::Ok(normal),
        Fault::Silent { share } if draw < share => Answer::Hang,
        Fault::Silent { .. } => Answer::Ok(normal),
    }
}

/// A number in [0, 1) drawn from the seed, the call and the attempt (splitmix64).
fn unit(seed: u64, call: u64, attempt: u32) -> f64 {
    let mut z = seed
        ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(attempt).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn json(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = code;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

fn completion() -> Response<Full<Bytes>> {
    json(
        StatusCode::OK,
        r#"{"id":"chatcmpl-sim","object":"chat.completion","created":0,"model":"gpt-sim","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#.to_owned(),
    )
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    json(
        code,
        format!(
            r#"{{"error":{{"message":"simulated {}","type":"server_error","param":null,"code":null}}}}"#,
            code.as_u16()
        ),
    )
}

fn limited(wait: Duration) -> Response<Full<Bytes>> {
    let mut res = json(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#.to_owned(),
    );
    let ms = wait.as_millis().max(1);
    let headers = res.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = http::HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    };
    put("retry-after-ms", ms.to_string());
    put("retry-after", ms.div_ceil(1000).to_string());
    put("x-ratelimit-remaining-requests", "0".to_owned());
    put("x-ratelimit-reset-requests", format!("{ms}ms"));
    res
}
