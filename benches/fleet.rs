//! Fleet mode's cost per call against a real redis-server (Debian's
//! `redis-server`, started here on a free loopback port): a turn reserved in
//! Redis per call (one round trip, what the limiter does), against a lease of
//! 8 turns per round trip (the alternative issue 14 asked to measure), and the
//! same limit kept in the process.
//!
//! `cargo bench -p stache-benches --bench fleet`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, StatusCode};
use stache_resilience::rate_limit::{Fleet, RateLimit, RateLimiter};
use test_support::redis::RedisServer;

/// The limiter's script, as the lease variant calls it.
const GCRA: &str = include_str!("../src/rate_limit/fleet/gcra.lua");
const LEASE: u64 = 8;

fn bench_fleet(c: &mut Criterion) {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A limit no call waits for: what is measured is the bookkeeping.
    let limit = RateLimit::per_minute(u32::MAX).burst(u32::MAX);
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("fleet");

    let local = RateLimiter::with_limit(limit).expect("a valid limit");
    group.bench_function("in_process", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let permit = local.acquire(black_box(0), None).await.expect("a turn");
                permit.finish(StatusCode::OK, &headers);
            })
        })
    });

    let shared = RateLimiter::with_fleet(limit, Fleet::new(redis.url()), "bench", "key")
        .expect("a valid fleet");
    group.bench_function("redis_round_trip_per_call", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let permit = shared.acquire(black_box(0), None).await.expect("a turn");
                permit.finish(StatusCode::OK, &headers);
            })
        })
    });
    let stats = shared.stats().fleet.expect("fleet mode");
    assert_eq!(stats.local, 0, "every turn was taken in Redis: {stats:?}");

    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut conn = runtime
        .block_on(client.get_multiplexed_async_connection())
        .expect("a connection to redis-server");
    let script = redis::Script::new(GCRA);
    let keys = ["bench:lease:requests", "bench:lease:tokens"];
    let mut left = 0u64;
    group.bench_function("redis_lease_of_8_per_call", |b| {
        b.iter(|| {
            if left == 0 {
                let (granted, _wait): (i64, i64) = runtime
                    .block_on(
                        script
                            .key(keys[0])
                            .key(keys[1])
                            .arg(u32::MAX)
                            .arg(u32::MAX)
                            .arg(0)
                            .arg(0)
                            .arg(1_000_000)
                            .arg(LEASE)
                            .invoke_async(&mut conn),
                    )
                    .expect("a lease");
                assert_eq!(granted, 1);
                left = LEASE;
            }
            left -= 1;
        })
    });
    group.finish();
    drop(redis);
}

criterion_group!(benches, bench_fleet);
criterion_main!(benches);
