//! Circuit breaker hot paths, ns per call: the closed-state success path and the
//! rejection while open, on one thread and on two threads sharing one breaker,
//! against a bare `service_fn` and two peers (failsafe, tower-resilience). The
//! closed path is measured for each trip policy: consecutive failures (the
//! default), a failure rate over a 30 s window, and that with slow calls, each
//! beside tower-resilience's rate breaker set the same way.
//!
//! Every service answers synchronously, so one poll with a no-op waker runs a
//! whole call; what is measured is the middleware, not an executor.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use stache_resilience::circuit_breaker::TripPolicy;
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use tower::{Layer, Service};

type Ready = std::future::Ready<Result<u64, std::io::Error>>;

fn ok_service() -> impl Service<u64, Response = u64, Error = std::io::Error, Future = Ready> + Clone
{
    tower::service_fn(|x: u64| std::future::ready(Ok(x)))
}

fn err_service() -> impl Service<u64, Response = u64, Error = std::io::Error, Future = Ready> + Clone
{
    tower::service_fn(|_: u64| std::future::ready(Err(std::io::Error::other("down"))))
}

/// One call: poll_ready, call, poll the future once.
#[inline(always)]
fn call_once<S: Service<u64>>(svc: &mut S, x: u64) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let fut = pin!(svc.call(x));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
}

fn open_breaker() -> CircuitBreaker {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 1,
        timeout: Duration::from_secs(3600),
        half_open_max_calls: 1,
    });
    breaker.record_failure();
    breaker
}

fn failsafe_default() -> impl failsafe::CircuitBreaker + Clone + Send + 'static {
    failsafe::Config::new().build()
}

fn failsafe_consecutive(n: u32) -> impl failsafe::CircuitBreaker + Clone + Send + 'static {
    let backoff = failsafe::backoff::constant(Duration::from_secs(3600));
    let policy = failsafe::failure_policy::consecutive_failures(n, backoff);
    failsafe::Config::new().failure_policy(policy).build()
}

fn tower_resilience_layer(
    consecutive: usize,
) -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(consecutive)
        .wait_duration_in_open(Duration::from_secs(3600))
        .build()
        .expect("valid tower-resilience config")
}

/// A failure rate of 50% over 30 s with 100 calls at least, and with slow
/// calls (over 10 s, 50%) when `slow`.
fn stache_rate(slow: bool) -> CircuitBreaker {
    let builder =
        CircuitBreaker::builder(CircuitBreakerConfig::default()).policy(TripPolicy::FailureRate {
            threshold: 0.5,
            minimum_calls: 100,
            window: Duration::from_secs(30),
        });
    let builder = if slow {
        builder.slow_calls(Duration::from_secs(10), 0.5)
    } else {
        builder
    };
    builder.build().expect("valid breaker settings")
}

/// tower-resilience's breaker set as `stache_rate`: a time-based window.
fn tower_resilience_rate(slow: bool) -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
    let builder = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_type(tower_resilience::circuitbreaker::SlidingWindowType::TimeBased)
        .sliding_window_duration(Duration::from_secs(30))
        .minimum_number_of_calls(100)
        .wait_duration_in_open(Duration::from_secs(3600));
    let builder = if slow {
        builder
            .slow_call_duration_threshold(Duration::from_secs(10))
            .slow_call_rate_threshold(0.5)
    } else {
        builder
    };
    builder.build().expect("valid tower-resilience config")
}

/// Runs `make()`'s call on `threads` threads at once, `iters` calls each; the
/// time per call of one thread.
fn threaded<F>(threads: usize, iters: u64, make: impl Fn() -> F) -> Duration
where
    F: FnMut(u64) -> bool + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut f = make();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    black_box(f(black_box(i)));
                }
                start.elapsed()
            })
        })
        .collect();
    barrier.wait();
    let total: Duration = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .sum();
    total / threads as u32
}

fn bench_closed(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("closed_success");
    for threads in [1usize, 2] {
        group.bench_function(format!("bare_service_fn/{threads}t"), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, || {
                    let mut svc = ok_service();
                    move |x| call_once(&mut svc, x)
                })
            })
        });
        closed_stache(&mut group, "stache", threads, &CircuitBreaker::default());
        let fs = failsafe_default();
        group.bench_function(format!("failsafe_default/{threads}t"), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, || {
                    let fs = fs.clone();
                    move |x| fs.call(|| Ok::<u64, ()>(x)).is_ok()
                })
            })
        });
        let fs = failsafe_consecutive(15);
        group.bench_function(format!("failsafe_consecutive/{threads}t"), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, || {
                    let fs = fs.clone();
                    move |x| fs.call(|| Ok::<u64, ()>(x)).is_ok()
                })
            })
        });
        let handle = runtime.handle();
        let layer = tower_resilience_layer(15);
        closed_tower_resilience(&mut group, "tower_resilience", threads, &layer, handle);
        for (name, slow) in [("rate", false), ("rate_slow", true)] {
            closed_stache(
                &mut group,
                &format!("stache_{name}"),
                threads,
                &stache_rate(slow),
            );
            let layer = tower_resilience_rate(slow);
            let name = format!("tower_resilience_{name}");
            closed_tower_resilience(&mut group, &name, threads, &layer, handle);
        }
    }
    group.finish();
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Successful calls through `breaker`'s layer, one layer per thread.
fn closed_stache(group: &mut Group<'_>, name: &str, threads: usize, breaker: &CircuitBreaker) {
    group.bench_function(format!("{name}/{threads}t"), |b| {
        b.iter_custom(|iters| {
            threaded(threads, iters, || {
                let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(ok_service());
                move |x| call_once(&mut svc, x)
            })
        })
    });
}

/// Successful calls through tower-resilience's `layer`, inside the runtime
/// its breaker needs.
fn closed_tower_resilience(
    group: &mut Group<'_>,
    name: &str,
    threads: usize,
    layer: &tower_resilience::circuitbreaker::CircuitBreakerLayer,
    handle: &tokio::runtime::Handle,
) {
    group.bench_function(format!("{name}/{threads}t"), |b| {
        b.iter_custom(|iters| {
            threaded(threads, iters, || {
                let mut svc = layer.layer(ok_service());
                let handle = handle.clone();
                move |x| {
                    let _g = handle.enter();
                    call_once(&mut svc, x)
                }
            })
        })
    });
}

fn bench_rejected(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("open_rejection");
    for threads in [1usize, 2] {
        let breaker = open_breaker();
        group.bench_function(format!("stache/{threads}t"), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, || {
                    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(ok_service());
                    move |x| !call_once(&mut svc, x)
                })
            })
        });
        let fs = failsafe_consecutive(1);
        let _ = fs.call(|| Err::<(), ()>(()));
        assert!(!fs.is_call_permitted());
        group.bench_function(format!("failsafe/{threads}t"), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, || {
                    let fs = fs.clone();
                    move |x| fs.call(|| Ok::<u64, ()>(x)).is_err()
                })
            })
        });
        let layer = tower_resilience_layer(1);
        let mut opener = layer.layer(err_service());
        call_once(&mut opener, 0);
        let handle = runtime.handle().clone();
        group.bench_function(format!("tower_resilience/{threads}t"), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, || {
                    let mut svc = opener.clone();
                    let handle = handle.clone();
                    move |x| {
                        let _g = handle.enter();
                        !call_once(&mut svc, x)
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_closed, bench_rejected
}
criterion_main!(benches);
