//! What reading a stream through a dialect costs per event: one long
//! OpenAI-style chat completion (20,000 `chat.completion.chunk` events, about
//! 180 bytes each) served from memory by a loopback server on a thread of its
//! own, read by one `HttpClient` on a current-thread runtime three ways,
//! interleaved round by round:
//!
//! * `lines`: `next_line` without a dialect, the bare line reader (one data
//!   line per event, the blank lines skipped): the baseline;
//! * `events`: `next_event` without a dialect (the event parser on top);
//! * `dialect`: `next_event` in the `OpenAiChat` dialect (content, end marker,
//!   model and usage read from every event).
//!
//! Reported: the median events (or lines) per second of each, and the median
//! of each round's ratio to the baseline run just before it (the machine's
//! other load drifts; pairs taken close together cancel most of it).
//!
//! `cargo bench -p stache-benches --bench streams` (`STREAM_ROUNDS`, default 25).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use stache_resilience::provider::dialect::{OpenAiChat, StreamDialect};
use stache_resilience::{HttpClient, HttpClientConfig};

const EVENTS: usize = 20_000;
const CHUNK: usize = 16 * 1024;

/// The whole stream: the events, a usage chunk and `[DONE]`.
fn completion() -> Bytes {
    let mut body = String::with_capacity(EVENTS * 200);
    for i in 0..EVENTS {
        body.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1733600000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    body.push_str("data: {\"id\":\"chatcmpl-bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20000,\"total_tokens\":20010}}\n\ndata: [DONE]\n\n");
    Bytes::from(body)
}

/// Serves `body` in 16 KiB frames to every request, on a thread of its own.
fn serve(body: Bytes) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let body = body.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
                            .chunks(CHUNK)
                            .map(|c| Ok(Frame::data(body.slice_ref(c))))
                            .collect();
                        async move {
                            let mut res = hyper::Response::new(StreamBody::new(
                                futures_util::stream::iter(frames),
                            ));
                            res.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("text/event-stream"),
                            );
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    url
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Lines,
    Events,
    Dialect,
}

async fn read(client: &HttpClient, way: Way) -> (usize, Duration) {
    let started = Instant::now();
    let mut stream = client
        .stream_post("/chat/completions", &serde_json::json!({"stream": true}))
        .await
        .expect("the stream");
    let mut count = 0;
    match way {
        Way::Lines => {
            while let Some(line) = stream.next_line().await.expect("a line") {
                std::hint::black_box(line);
                count += 1;
            }
        }
        Way::Events | Way::Dialect => {
            while let Some(event) = stream.next_event().await.expect("an event") {
                std::hint::black_box(event);
                count += 1;
            }
        }
    }
    if way == Way::Dialect {
        assert!(stream.is_complete() && stream.usage().is_some());
    }
    (count, started.elapsed())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The dialect's own work per event, without the reading: nanoseconds.
fn dialect_alone() -> f64 {
    use stache_resilience::client::Event;
    use stache_resilience::provider::dialect::{Dialect, StreamReport};
    let event = Event::new(
        "",
        "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1733600000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token1\"},\"finish_reason\":null}]}",
    );
    let mut report = StreamReport::default();
    let n = 2_000_000;
    let started = Instant::now();
    for _ in 0..n {
        OpenAiChat.read(std::hint::black_box(&event), &mut report);
    }
    std::hint::black_box(&report);
    started.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    println!(
        "OpenAiChat::read alone: {:.1} ns per event",
        dialect_alone()
    );
    let rounds: usize = std::env::var("STREAM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let url = serve(completion());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let plain = HttpClient::new(HttpClientConfig::new(&url)).expect("client");
        let mut config = HttpClientConfig::new(&url);
        config.stream.dialect = Some(StreamDialect::new(OpenAiChat));
        let dialect = HttpClient::new(config).expect("client");
        // Warm up: connections, allocator.
        for _ in 0..2 {
            read(&plain, Way::Lines).await;
            read(&dialect, Way::Dialect).await;
        }
        let (mut lines, mut events, mut dialects) = (Vec::new(), Vec::new(), Vec::new());
        let (mut events_ratio, mut dialect_ratio) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let rate = |(n, t): (usize, Duration)| n as f64 / t.as_secs_f64();
            let base = rate(read(&plain, Way::Lines).await);
            let ev = rate(read(&plain, Way::Events).await);
            let base2 = rate(read(&plain, Way::Lines).await);
            let di = rate(read(&dialect, Way::Dialect).await);
            events_ratio.push(ev / base);
            dialect_ratio.push(di / base2);
            lines.extend([base, base2]);
            events.push(ev);
            dialects.push(di);
        }
        println!("{rounds} rounds of {EVENTS} events, medians:");
        println!(
            "  lines   (next_line, no dialect)      {:>10.0} lines/s",
            median(lines)
        );
        println!(
            "  events  (next_event, no dialect)     {:>10.0} events/s, {:.2}x the lines",
            median(events),
            median(events_ratio)
        );
        println!(
            "  dialect (next_event, OpenAiChat)     {:>10.0} events/s, {:.2}x the lines",
            median(dialects),
            median(dialect_ratio)
        );
    });
}
