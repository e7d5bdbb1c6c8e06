//! The 429 herd, against a real rate limiter: nginx's `limit_req` at 2
//! requests a second (no burst, `429` with `Retry-After: 1`) in front of a
//! healthy loopback upstream, and 20 callers sharing one `HttpClient` with up
//! to 10 retries each from a 200 ms base delay. Counts what nginx logged, and
//! prints the attempts per 100 ms window (`--nocapture` shows them): the
//! waves of callers returning together are gone.
//!
//! Issue 14's targets: without configuration beyond `max_retries`, all 20
//! succeed with at most 45 attempts within 12 s (perfect pacing after the
//! first burst of 20: about 40 attempts and 10.5 s); with `rate_limit` at 120
//! a minute, at most 22 attempts within 11 s.

use std::time::{Duration, Instant};

use stache_resilience::rate_limit::RateLimit;
use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::nginx::Nginx;
use test_support::server::{Reply, Server};

const CALLERS: usize = 20;

/// The client a herd uses, at nginx's URL.
type Setup = fn(String) -> HttpClientConfig;

struct Run {
    succeeded: usize,
    took: Duration,
    attempts: usize,
    accepted: usize,
}

/// One herd at a time: two at once share the two cores with two nginx
/// workers and two upstreams, and the jitter that adds is the test's, not
/// the client's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn plain(url: String) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 10;
    config.retry_base_delay = Duration::from_millis(200);
    config
}

fn configured(url: String) -> HttpClientConfig {
    let mut config = plain(url);
    config.rate_limit = Some(RateLimit::per_minute(120));
    config
}

/// The `openai` preset, pointed at nginx: its cold-start window.
fn preset(url: String) -> HttpClientConfig {
    let mut config = HttpClientConfig::openai("sk-test");
    config.base_url = url;
    config
}

async fn herd(callers: usize, deadline: Duration, setup: Setup) -> Run {
    let _turn = ONE_AT_A_TIME.lock().await;
    let upstream = Server::replies(vec![Reply::json(200, r#"{"ok":true}"#)]).await;
    let addr = upstream.addr;
    let nginx = tokio::task::spawn_blocking(move || Nginx::rate_limited(addr, "2r/s"))
        .await
        .unwrap();
    let config = setup(nginx.url());
    let rate_limit = config.rate_limit;
    let client = HttpClient::new(config).expect("a valid config");

    let started = Instant::now();
    let calls: Vec<_> = (0..callers)
        // Each call bounded by its deadline, as an application's would be:
        // the limiter then waits up to it rather than its default longest
        // wait (`retry_max_delay`, 10 s), which the last of 20 callers spaced
        // 500 ms apart nearly reaches on its own, and passes after one 429
        // from an attempt that a scheduling delay pushed within nginx's
        // 500 ms.
        .map(|i| {
            let call = client.get(format!("/v1/embeddings/{i}")).deadline(deadline);
            tokio::spawn(call.send())
        })
        .collect();
    let mut succeeded = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(e) => eprintln!("a call failed: {e}"),
        }
    }
    let took = started.elapsed();
    // nginx writes its log line as it answers; the last one is in.
    let log = nginx.log();
    let first = log.first().map_or(0.0, |(at, _)| *at);
    let accepted = log.iter().filter(|(_, status)| *status == 200).count();
    println!(
        "rate_limit {rate_limit:?}: {succeeded}/{callers} calls succeeded in {:.2} s; nginx saw {} attempts ({accepted} accepted)",
        took.as_secs_f64(),
        log.len(),
    );
    println!("attempts per 100 ms window (window start: count):");
    let mut windows = std::collections::BTreeMap::<u64, usize>::new();
    for (at, _) in &log {
        *windows.entry(((at - first) * 10.0) as u64).or_default() += 1;
    }
    for (window, count) in &windows {
        println!("  {:>5.1} s: {}", *window as f64 / 10.0, "#".repeat(*count));
    }
    println!("client stats: {:?}", client.stats().rate_limit);
    // After the first burst, no window holds more than two attempts.
    let after_burst = windows
        .iter()
        .filter(|(w, _)| **w >= 5)
        .map(|(_, c)| *c)
        .max();
    assert!(
        after_burst.unwrap_or(0) <= 2,
        "attempts came in waves: {windows:?}"
    );
    Run {
        succeeded,
        took,
        attempts: log.len(),
        accepted,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_herd_learns_the_pace_without_configuration() {
    let run = herd(CALLERS, Duration::from_secs(30), plain).await;
    assert_eq!(run.succeeded, CALLERS);
    assert_eq!(run.accepted, CALLERS);
    assert!(run.attempts <= 45, "{} attempts", run.attempts);
    assert!(run.took <= Duration::from_secs(12), "took {:?}", run.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_limit_sends_almost_nothing_that_is_refused() {
    let run = herd(CALLERS, Duration::from_secs(30), configured).await;
    assert_eq!(run.succeeded, CALLERS);
    assert_eq!(run.accepted, CALLERS);
    assert!(run.attempts <= 22, "{} attempts", run.attempts);
    assert!(run.took <= Duration::from_secs(11), "took {:?}", run.took);
}

/// Issue 26's cold burst: 60 callers at once, each with 60 s, through the
/// `openai` preset, whose window lets 2 attempts out at first: all served,
/// with at most 72 attempts (121 before the window: the whole burst went out
/// before the first answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_costs_about_one_attempt_per_call() {
    let run = herd(60, Duration::from_secs(60), preset).await;
    assert_eq!(run.succeeded, 60);
    assert_eq!(run.accepted, 60);
    assert!(run.attempts <= 72, "{} attempts", run.attempts);
}
