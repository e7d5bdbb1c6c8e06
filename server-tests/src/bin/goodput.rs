//! The 429 herd, measured against a real rate limiter: nginx's `limit_req` at
//! 2 requests a second (no burst, `429` with `Retry-After: 1`) in front of a
//! healthy loopback upstream, and 20 callers sharing one `HttpClient` with up
//! to 10 retries each from a 200 ms base delay.
//!
//! `cargo run -p server-tests --bin goodput` prints the attempts nginx saw,
//! how long the 20 calls took, and the attempts per 100 ms window (the waves
//! of callers returning together). Perfect pacing needs 20 accepted attempts
//! over about 10 s; issue 14's target is at most 45 attempts within 12 s.
//! Needs Debian's `nginx-light`.

use std::time::{Duration, Instant};

use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::nginx::Nginx;
use test_support::server::{Reply, Server};

const CALLERS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let upstream = Server::replies(vec![Reply::json(200, r#"{"ok":true}"#)]).await;
    let nginx = Nginx::rate_limited(upstream.addr, "2r/s");
    let mut config = HttpClientConfig::new(nginx.url());
    config.max_retries = 10;
    config.retry_base_delay = Duration::from_millis(200);
    let client = HttpClient::new(config).expect("a valid config");

    let started = Instant::now();
    let calls: Vec<_> = (0..CALLERS)
        .map(|i| tokio::spawn(client.get(format!("/v1/embeddings/{i}")).send()))
        .collect();
    let mut succeeded = 0;
    for call in calls {
        if matches!(call.await, Ok(Ok(_))) {
            succeeded += 1;
        }
    }
    let took = started.elapsed();

    let log = nginx.log();
    let first = log.first().map_or(0.0, |(at, _)| *at);
    let accepted = log.iter().filter(|(_, status)| *status == 200).count();
    println!(
        "{succeeded}/{CALLERS} calls succeeded in {:.1} s; nginx saw {} attempts ({accepted} accepted, {} answered 429)",
        took.as_secs_f64(),
        log.len(),
        log.iter().filter(|(_, status)| *status == 429).count(),
    );
    println!("attempts per 100 ms window (window start: count):");
    let mut windows = std::collections::BTreeMap::<u64, usize>::new();
    for (at, _) in &log {
        *windows.entry(((at - first) * 10.0) as u64).or_default() += 1;
    }
    for (window, count) in windows {
        println!("  {:>5.1} s: {}", window as f64 / 10.0, "#".repeat(count));
    }
}
