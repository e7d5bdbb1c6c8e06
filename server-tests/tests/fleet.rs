//! Fleet mode against a real redis-server (Debian's `redis-server`, started
//! per test on a free loopback port): two clients with their own Redis
//! connections share one provider limit, and keep calling at their share of
//! it while Redis is down, then share it again once Redis is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stache_resilience::http::{HeaderValue, header};
use stache_resilience::rate_limit::{Fleet, RateLimit};
use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::Capture;
use test_support::redis::RedisServer;
use test_support::server::{Reply, Server};
use tracing::Instrument;

/// An upstream that notes when each request arrived.
async fn upstream() -> (Server, Arc<Mutex<Vec<Instant>>>) {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let noted = arrivals.clone();
    let server = Server::start(move |_, _| {
        noted.lock().unwrap().push(Instant::now());
        Reply::json(200, r#"{"ok":true}"#)
    })
    .await;
    (server, arrivals)
}

fn client(upstream: &Server, limit: RateLimit, fleet: Fleet) -> HttpClient {
    let mut config = HttpClientConfig::new(upstream.url());
    let mut key = HeaderValue::from_static("Bearer sk-fleet-test-key");
    key.set_sensitive(true);
    config.headers.insert(header::AUTHORIZATION, key);
    config.rate_limit = Some(limit);
    config.fleet = Some(fleet);
    HttpClient::for_provider("embedder", config).expect("a valid config")
}

/// `callers` tasks per client, each calling in a loop until `until`; returns
/// the longest call and how many failed.
async fn drive(
    clients: &[HttpClient],
    callers: usize,
    until: Instant,
    capture: &Capture,
) -> (Duration, usize) {
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..callers {
            let client = client.clone();
            tasks.push(tokio::spawn(
                async move {
                    let (mut longest, mut failed) = (Duration::ZERO, 0);
                    while Instant::now() < until {
                        let started = Instant::now();
                        if let Err(e) = client.get("/v1/embeddings").send().await {
                            eprintln!("a call failed: {e}");
                            failed += 1;
                        }
                        longest = longest.max(started.elapsed());
                    }
                    (longest, failed)
                }
                .instrument(capture.span()),
            ));
        }
    }
    let (mut longest, mut failed) = (Duration::ZERO, 0);
    for task in tasks {
        let (l, f) = task.await.expect("a caller task");
        longest = longest.max(l);
        failed += f;
    }
    (longest, failed)
}

/// The most arrivals in any window of `width` (each window starting at an
/// arrival).
fn busiest(arrivals: &[Instant], width: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t - sorted[i] < width)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn between(arrivals: &[Instant], from: Instant, to: Instant) -> usize {
    arrivals.iter().filter(|t| **t >= from && **t < to).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_share_one_limit_through_redis() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let (server, arrivals) = upstream().await;
    // 10 a second with a burst of 2. A fleet of "1": if the budget were not
    // shared, each client would send 10 a second on its own.
    let limit = RateLimit::per_minute(600).burst(2);
    let fleet = Fleet::new(redis.url()).fleet_size(1);
    let clients = [
        client(&server, limit, fleet.clone()),
        client(&server, limit, fleet),
    ];
    let keys = clients[0]
        .rate_limiter()
        .fleet_keys()
        .expect("fleet mode")
        .clone();
    assert_eq!(
        Some(&keys),
        clients[1].rate_limiter().fleet_keys(),
        "the same budget"
    );

    let capture = Capture::new();
    let started = Instant::now();
    let (longest, failed) = drive(&clients, 4, started + Duration::from_secs(5), &capture).await;

    let arrivals = arrivals.lock().unwrap().clone();
    let in_five = between(&arrivals, started, started + Duration::from_secs(5));
    let per_second = busiest(&arrivals, Duration::from_secs(1));
    let stats: Vec<_> = clients
        .iter()
        .map(|c| c.rate_limiter().stats().fleet.unwrap())
        .collect();
    println!(
        "{} calls in all, {in_five} in the first 5 s, at most {per_second} in any second; longest call {longest:?}; {stats:?}",
        arrivals.len()
    );
    assert_eq!(failed, 0, "every call succeeded");
    // 5 s at 10 a second plus the burst (and a request of slack for the
    // loopback's scheduling between Redis's clock and the upstream's).
    assert!(
        in_five <= 50 + 2 + 1,
        "{in_five} requests in 5 s over a 10/s limit"
    );
    assert!(
        per_second <= 10 + 2 + 1,
        "{per_second} requests in one second"
    );
    assert!(in_five >= 40, "the budget was used: {in_five} in 5 s");
    for stats in &stats {
        assert!(
            stats.shared >= 15,
            "each client took its turns in Redis: {stats:?}"
        );
        assert_eq!((stats.local, stats.outages), (0, 0), "{stats:?}");
    }
    // The budget's keys hold a hash of the key, never the key.
    let stored = redis.command(&["KEYS", "*"]);
    assert!(stored.contains(&keys[0]), "{stored:?} has {keys:?}");
    assert!(keys[0].starts_with("stache:rl:{embedder:"), "{keys:?}");
    assert!(!stored.contains("sk-fleet"), "{stored}");
    assert!(!capture.text().contains("WARN"), "{}", capture.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_calls_go_on_at_the_fallback_rate_then_return() {
    let mut redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let (server, arrivals) = upstream().await;
    // 10 a second over a fleet of 2: 5 a second each without Redis.
    let limit = RateLimit::per_minute(600);
    let fleet = Fleet::new(redis.url())
        .fleet_size(2)
        .probe_interval(Duration::from_millis(200));
    let clients = [
        client(&server, limit, fleet.clone()),
        client(&server, limit, fleet),
    ];
    let capture = Capture::new();

    let started = Instant::now();
    let (killed_at, back_at) = (Duration::from_millis(1500), Duration::from_millis(3500));
    let driving = {
        let clients = clients.clone();
        let capture = capture.clone();
        tokio::spawn(
            async move { drive(&clients, 3, started + Duration::from_secs(6), &capture).await },
        )
    };
    tokio::time::sleep_until((started + killed_at).into()).await;
    let redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis
    })
    .await
    .unwrap();
    tokio::time::sleep_until((started + back_at).into()).await;
    let shared_before = clients
        .iter()
        .map(|c| c.rate_limiter().stats().fleet.unwrap().shared)
        .sum::<u64>();
    let on_fallback = clients
        .iter()
        .all(|c| c.rate_limiter().stats().fleet.unwrap().on_fallback);
    let redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let (longest, failed) = driving.await.unwrap();

    let arrivals = arrivals.lock().unwrap().clone();
    // Starts reserved in Redis before the kill may land up to 0.6 s after it
    // (6 callers at 10 a second): count from 0.7 s after it.
    let down = between(
        &arrivals,
        started + killed_at + Duration::from_millis(700),
        started + back_at,
    );
    let stats: Vec<_> = clients
        .iter()
        .map(|c| c.rate_limiter().stats().fleet.unwrap())
        .collect();
    let shared_after = stats.iter().map(|s| s.shared).sum::<u64>();
    println!(
        "{} calls in all, {down} in the 1.3 s of Redis down with no start reserved there before; longest call {longest:?}; shared turns {shared_before} before the restart, {shared_after} after; {stats:?}",
        arrivals.len()
    );
    assert_eq!(failed, 0, "every call succeeded");
    assert!(
        longest < Duration::from_secs(2),
        "no call hung on Redis: {longest:?}"
    );
    assert!(
        on_fallback,
        "both clients limited themselves while Redis was down"
    );
    // 1.3 s at 5 a second each, and a start of slack each: had either
    // client kept to the whole limit, 26.
    assert!(down <= 13 + 2 + 1, "{down} requests while Redis was down");
    assert!(down >= 8, "calls went on while Redis was down: {down}");
    for stats in &stats {
        assert_eq!(stats.outages, 1, "{stats:?}");
        assert!(
            stats.local > 0 && !stats.on_fallback,
            "back on Redis: {stats:?}"
        );
    }
    assert!(
        shared_after > shared_before + 10,
        "turns taken in Redis again after its restart"
    );
    assert!(
        !redis.command(&["KEYS", "*"]).is_empty(),
        "the budget is back in Redis"
    );
    let warnings = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.contains("Redis unreachable"))
        .count();
    assert_eq!(
        warnings,
        2,
        "one WARN per client and outage:\n{}",
        capture.text()
    );
    assert!(
        capture
            .text()
            .contains("back to the fleet's shared rate limit"),
        "{}",
        capture.text()
    );
}
