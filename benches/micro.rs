//! Small costs paid on every attempt: backoff delays and request IDs; the
//! fail-fast cost of a rejected `HttpClient::post` while the circuit is open;
//! and what keeping a request body for a retry costs per call.

use std::future::{Future, IntoFuture};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use stache_resilience::request_id::RequestId;
use stache_resilience::retry::{Jitter, RetryConfig};
use stache_resilience::{HttpClient, HttpClientConfig};

fn bench_backoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("backoff");
    for (name, jitter) in [
        ("symmetric", Jitter::Symmetric),
        ("full", Jitter::Full),
        ("decorrelated", Jitter::Decorrelated),
        ("none", Jitter::None),
    ] {
        let config = RetryConfig {
            jitter,
            ..RetryConfig::default()
        };
        group.bench_function(name, |b| b.iter(|| config.delay_for_attempt(black_box(3))));
    }
    group.finish();
}

fn bench_budget(c: &mut Criterion) {
    use tower::retry::budget::{Budget, TpsBudget};
    let mut group = c.benchmark_group("budget_deposit");
    let tps = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    group.bench_function("tower_tps_budget", |b| b.iter(|| tps.deposit()));
    let ours = stache_resilience::retry::RetryBudget::new(0.2, 10, 100);
    group.bench_function("stache_retry_budget", |b| b.iter(|| ours.deposit()));
    group.finish();
}

fn bench_request_id(c: &mut Criterion) {
    c.bench_function("request_id/generate", |b| b.iter(RequestId::generate));
    // As a call uses it: one more handle for the header, both dropped.
    c.bench_function("request_id/generate_and_clone", |b| {
        b.iter(|| {
            let id = RequestId::generate();
            let header = black_box(id.header_value().clone());
            (id, header)
        })
    });
}

fn bench_fail_fast(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut config = HttpClientConfig::new("http://127.0.0.1:9");
    config.circuit_breaker_timeout = Duration::from_secs(3600);
    let client = HttpClient::new(config).unwrap();
    for _ in 0..15 {
        client.circuit_breaker().record_failure();
    }
    let body = serde_json::json!({ "model": "m", "input": ["a short text to embed"] });
    c.bench_function("fail_fast/http_client_post_open", |b| {
        b.iter(|| {
            let mut cx = Context::from_waker(Waker::noop());
            let fut = pin!(client.post("/embeddings", &body).into_future());
            match fut.poll(&mut cx) {
                Poll::Ready(Err(e)) => assert!(e.is_circuit_open()),
                _ => panic!("a rejected call must finish in one poll"),
            }
        })
    });
}

/// One call through `svc`, which must finish in one poll.
fn call_now<S, R>(svc: &mut S, request: R) -> S::Response
where
    S: tower::Service<R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the service is always ready"),
    }
    let fut = pin!(svc.call(request));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the call finishes in one poll"),
    }
}

/// A call whose attempt reads its whole 1 KiB body and succeeds, under
/// `RetryLayer`: a `Full` body is copied, a boxed one kept as it is sent
/// (`TeeBody`); beside the same service with no retry layer.
fn bench_replay(c: &mut Criterion) {
    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full};
    use stache_resilience::RetryLayer;
    use tower::Layer;

    fn upstream<B>()
    -> impl tower::Service<http::Request<B>, Response = usize, Error = B::Error> + Clone
    where
        B: http_body::Body<Data = Bytes>,
    {
        tower::service_fn(|req: http::Request<B>| async move {
            Ok(req.into_body().collect().await?.to_bytes().len())
        })
    }

    let body = Bytes::from(vec![b'x'; 1024]);
    let layer = RetryLayer::new(RetryConfig::default()).without_budget();
    let mut group = c.benchmark_group("retry_replay");
    let mut bare = upstream::<Full<Bytes>>();
    group.bench_function("no_retry_layer_full", |b| {
        b.iter(|| call_now(&mut bare, http::Request::new(Full::new(body.clone()))))
    });
    let mut copied = layer.layer(upstream::<Full<Bytes>>());
    group.bench_function("full_copied", |b| {
        b.iter(|| call_now(&mut copied, http::Request::new(Full::new(body.clone()))))
    });
    let mut bare_boxed = upstream::<BoxBody<Bytes, std::convert::Infallible>>();
    group.bench_function("no_retry_layer_boxed", |b| {
        b.iter(|| {
            call_now(
                &mut bare_boxed,
                http::Request::new(Full::new(body.clone()).boxed()),
            )
        })
    });
    let mut teed = layer.layer(upstream::<BoxBody<Bytes, std::convert::Infallible>>());
    group.bench_function("boxed_teed", |b| {
        b.iter(|| {
            call_now(
                &mut teed,
                http::Request::new(Full::new(body.clone()).boxed()),
            )
        })
    });
    group.finish();
}

/// A call through `RateLimitLayer` whose limiter is not engaged (no limit
/// configured, never throttled): one atomic load, a reference count, and the
/// scan of the answer's headers for a spent quota; beside the same service
/// bare. The answer carries five headers, as an LLM API's do.
fn bench_rate_limit(c: &mut Criterion) {
    use stache_resilience::rate_limit::{RateLimitLayer, RateLimiter};
    use tower::Layer;

    fn upstream() -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<()>,
        Error = std::convert::Infallible,
    > + Clone {
        tower::service_fn(|_req: http::Request<()>| async {
            let mut res = http::Response::new(());
            let headers = res.headers_mut();
            for (name, value) in [
                ("content-type", "application/json"),
                ("x-request-id", "abcd1234"),
                ("x-ratelimit-remaining-requests", "499"),
                ("x-ratelimit-remaining-tokens", "89000"),
                ("date", "Wed, 02 Dec 2026 10:00:00 GMT"),
            ] {
                headers.insert(name, http::HeaderValue::from_static(value));
            }
            Ok(res)
        })
    }

    let mut group = c.benchmark_group("rate_limit");
    let mut bare = upstream();
    group.bench_function("no_layer", |b| {
        b.iter(|| call_now(&mut bare, http::Request::new(())))
    });
    let mut limited = RateLimitLayer::new(RateLimiter::new()).layer(upstream());
    group.bench_function("not_engaged", |b| {
        b.iter(|| call_now(&mut limited, http::Request::new(())))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench_backoff, bench_budget, bench_request_id, bench_fail_fast, bench_replay, bench_rate_limit
}
criterion_main!(benches);
