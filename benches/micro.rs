//! Small costs paid on every attempt: backoff delays and request IDs; and the
//! fail-fast cost of a rejected `HttpClient::post` while the circuit is open.

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench_backoff, bench_budget, bench_request_id, bench_fail_fast
}
criterion_main!(benches);
