//! A provider's health over time: the breaker's own health check closes an
//! open circuit, calls wait out a short outage within their deadlines and are
//! let go spread out, and a failed probe's caller waits rather than fails.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stache_resilience::circuit_breaker::{CircuitState, HealthProbe};
use stache_resilience::client::HealthCheck;
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, HttpClient, HttpClientConfig};
use support::{Reply, Seen, Server};
use tokio::time::Instant;

/// A provider that answers 503 to everything (its health endpoint too)
/// while `down`, and records when each completion arrived.
struct Provider {
    server: Server,
    down: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Provider {
    async fn start() -> Provider {
        let down = Arc::new(AtomicBool::new(true));
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (d, a) = (down.clone(), arrivals.clone());
        let server = Server::start(move |_, seen: &Seen| {
            if seen.path != "/health" {
                a.lock().unwrap().push(Instant::now());
            }
            if d.load(Ordering::SeqCst) {
                Reply::Status(503)
            } else {
                Reply::json(200, "{}")
            }
        })
        .await;
        Provider {
            server,
            down,
            arrivals,
        }
    }

    fn recover(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    fn checks(&self) -> usize {
        self.server
            .seen()
            .iter()
            .filter(|s| s.path == "/health")
            .count()
    }
}

/// A `GET /v1/models` with `deadline`, on a task of its own.
fn spawn_get(
    client: &HttpClient,
    deadline: Duration,
) -> tokio::task::JoinHandle<Result<stache_resilience::client::Response, stache_resilience::Error>>
{
    let call = client.get("/v1/models").deadline(deadline);
    tokio::spawn(call.send())
}

/// The original design's client with one failure opening a circuit that
/// stays open a minute, no retries, and the options under test.
fn config(url: &str, check: bool, wait: Option<Duration>) -> HttpClientConfig {
    let mut c = HttpClientConfig::new(url);
    c.max_retries = 0;
    c.circuit_breaker_threshold = 1;
    c.circuit_breaker_half_open_max_calls = 1;
    c.circuit_breaker_timeout = Duration::from_secs(60);
    c.breaker.wait_while_open = wait;
    if check {
        c.health_check = Some(HealthCheck::get("/health"));
    }
    c
}

#[tokio::test(start_paused = true)]
async fn the_health_check_closes_an_open_circuit_within_an_interval_of_the_recovery() {
    let provider = Provider::start().await;
    let client = HttpClient::new(config(&provider.server.url(), true, None)).unwrap();
    let err = client.get("/v1/models").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);

    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    assert_eq!(provider.checks(), 3, "one check a second while open");

    provider.recover();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        client.circuit_breaker().state(),
        CircuitState::Closed,
        "closed by the check, 56 s before the open time ends"
    );
    client.get("/v1/models").await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(provider.checks(), 4, "no check once closed");
}

#[tokio::test(start_paused = true)]
async fn a_breaker_layer_with_a_health_probe_closes_without_a_caller() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let probe = HealthProbe::new(Duration::from_secs(2), move || {
        let h = h.clone();
        Box::pin(async move { h.load(Ordering::SeqCst) })
    });
    let breaker = CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 1,
        timeout: Duration::from_secs(600),
        half_open_max_calls: 1,
    })
    .health_probe(probe)
    .build()
    .unwrap();
    breaker.record_failure();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(breaker.state(), CircuitState::Closed);

    // Forced open, it stays open whatever the probe says.
    breaker.force_open();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_out_an_outage_within_its_deadline() {
    let provider = Provider::start().await;
    let url = provider.server.url();
    let client = HttpClient::new(config(&url, true, Some(Duration::from_secs(30)))).unwrap();
    client.get("/v1/models").await.unwrap_err();
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);

    let started = Instant::now();
    let waiting = spawn_get(&client, Duration::from_secs(10));
    // A call whose deadline ends before the recovery fails as refused by
    // the circuit, at its deadline.
    let short = client
        .get("/v1/models")
        .deadline(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(short.is_circuit_open(), "{short:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    tokio::time::sleep(Duration::from_secs(2)).await;
    provider.recover();
    let answer = waiting.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(4) && took <= Duration::from_millis(5500),
        "served within a check interval and the release spread of the recovery: {took:?}"
    );
    assert_eq!(
        provider.arrivals.lock().unwrap().len(),
        2,
        "the waiting calls sent nothing during the outage"
    );

    // Without `wait_while_open`, the original rule: refused at once.
    let provider = Provider::start().await;
    let client = HttpClient::new(config(&provider.server.url(), true, None)).unwrap();
    client.get("/v1/models").await.unwrap_err();
    let started = Instant::now();
    let err = client
        .get("/v1/models")
        .deadline(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.is_circuit_open());
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn waiting_calls_are_let_go_spread_out_when_the_circuit_closes() {
    let provider = Provider::start().await;
    let client = HttpClient::new(config(
        &provider.server.url(),
        true,
        Some(Duration::from_secs(30)),
    ))
    .unwrap();
    client.get("/v1/models").await.unwrap_err();
    provider.arrivals.lock().unwrap().clear();
    let calls: Vec<_> = (0..20)
        .map(|_| spawn_get(&client, Duration::from_secs(20)))
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    provider.recover();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    let arrivals = provider.arrivals.lock().unwrap().clone();
    assert_eq!(
        arrivals.len(),
        20,
        "one attempt each, all after the recovery"
    );
    let first = *arrivals.iter().min().unwrap();
    let last = *arrivals.iter().max().unwrap();
    assert!(
        last - first >= Duration::from_millis(250) && last - first <= Duration::from_millis(500),
        "spread over up to half a second: {:?}",
        last - first
    );
    let mut distinct = arrivals.clone();
    distinct.dedup();
    assert!(distinct.len() >= 15, "not in one instant: {arrivals:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probes_caller_waits_for_the_close_when_calls_may_wait() {
    let provider = Provider::start().await;
    let mut c = config(&provider.server.url(), false, Some(Duration::from_secs(30)));
    c.max_retries = 3;
    c.retry_base_delay = Duration::from_millis(100);
    c.retry_max_delay = Duration::from_millis(100);
    c.circuit_breaker_timeout = Duration::from_secs(2);
    let client = HttpClient::new(c).unwrap();
    client.get("/v1/models").await.unwrap_err();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // This call is the half-open probe; the provider is still down.
    let started = Instant::now();
    let probe = spawn_get(&client, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        client.circuit_breaker().state(),
        CircuitState::Open,
        "the probe failed"
    );
    let sent = provider.arrivals.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        provider.arrivals.lock().unwrap().len(),
        sent,
        "the probe's caller sends nothing while the circuit is open"
    );
    provider.recover();
    let answer = probe.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    // At the next recovery time (2 s after the probe failed), the caller
    // goes on as a new caller would.
    assert!(started.elapsed() < Duration::from_millis(2200));
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_retries_opened_the_circuit_waits_for_it_to_close() {
    let provider = Provider::start().await;
    let mut c = config(&provider.server.url(), true, Some(Duration::from_secs(30)));
    c.max_retries = 5;
    c.retry_base_delay = Duration::from_millis(100);
    c.retry_max_delay = Duration::from_millis(100);
    c.circuit_breaker_threshold = 2;
    c.breaker.count_attempts = true;
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    let call = spawn_get(&client, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    assert_eq!(
        provider.arrivals.lock().unwrap().len(),
        2,
        "the second failed attempt opened the circuit"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        provider.arrivals.lock().unwrap().len(),
        2,
        "nothing sent while open"
    );
    provider.recover();
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().retries, 2);
}

#[cfg(feature = "serde")]
#[test]
fn the_health_check_and_the_wait_are_read_from_settings_and_checked() {
    let config: HttpClientConfig = toml::from_str(
        "base_url = \"http://127.0.0.1:9/v1\"\n\
         [breaker]\nwait_while_open = 15\n\
         [health_check]\npath = \"/health\"\ninterval = 2\ntimeout = 0.5\n",
    )
    .unwrap();
    assert_eq!(
        config.breaker.wait_while_open,
        Some(Duration::from_secs(15))
    );
    let check = config.health_check.clone().unwrap();
    assert_eq!(check.path, "/health");
    assert_eq!(check.interval, Duration::from_secs(2));
    assert_eq!(check.timeout, Duration::from_millis(500));
    config.validate().unwrap();

    let mut bad = config.clone();
    bad.health_check.as_mut().unwrap().path = "health".into();
    assert_eq!(bad.validate().unwrap_err().field(), "health_check.path");
    let mut bad = config.clone();
    bad.health_check.as_mut().unwrap().interval = Duration::ZERO;
    assert_eq!(bad.validate().unwrap_err().field(), "health_check.interval");
    let mut bad = config;
    bad.breaker.wait_while_open = Some(Duration::ZERO);
    assert_eq!(
        bad.validate().unwrap_err().field(),
        "breaker.wait_while_open"
    );
    let err = toml::from_str::<HttpClientConfig>(
        "base_url = \"h\"\n[health_check]\npath = \"/h\"\ninterval = 1\ntimeout = 1\nevery = 2\n",
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("every"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_finds_the_probe_slot_taken_waits_for_the_probes_verdict() {
    // Down for the first call; then every answer takes a second.
    let server = Server::start(|n, _| match n {
        0 => Reply::Status(503),
        _ => Reply::Late {
            after: Duration::from_secs(1),
            reply: Box::new(Reply::json(200, "{}")),
        },
    })
    .await;
    let mut c = config(&server.url(), false, Some(Duration::from_secs(30)));
    c.circuit_breaker_timeout = Duration::from_secs(2);
    let client = HttpClient::new(c).unwrap();
    client.get("/v1/models").await.unwrap_err();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    // The first takes the one half-open slot; the second finds it taken.
    let probe = spawn_get(&client, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiter = client
        .get("/v1/models")
        .deadline(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(waiter.status(), 200);
    assert_eq!(probe.await.unwrap().unwrap().status(), 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(2600),
        "after the probe's second and the waiter's own: {took:?}"
    );
    assert_eq!(server.hits(), 3);
}

/// After five failed calls to model `bad` (the provider answers it 503, and
/// `good` 200): whether a call to `good` is served, whether one to `bad` is
/// refused before it is sent, and the provider's hits.
async fn after_one_model_failed(per_model: bool) -> (bool, bool, usize) {
    let server = Server::start(|_, seen: &Seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"bad\"") {
            Reply::Status(503)
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let mut config = HttpClientConfig::openai("sk-test");
    config.base_url = server.url();
    config.max_retries = 0;
    config.health_check = None;
    config.breaker.wait_while_open = None;
    config.breaker_per_model = per_model;
    let client = HttpClient::new(config).unwrap();
    let call = |model: &'static str| {
        client.post(
            "/chat/completions",
            &serde_json::json!({ "model": model, "messages": [] }),
        )
    };
    for _ in 0..5 {
        let err = call("bad").await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err:?}");
    }
    let good = call("good").await;
    // Named by the builder rather than the body: the same model's circuit.
    let bad = client.get("/models/bad").model("bad").await;
    let refused = bad.as_ref().is_err_and(|e| e.is_circuit_open());
    if per_model {
        let state = |model| client.model_circuit_breaker(model).map(|b| b.state());
        assert_eq!(state("bad"), Some(CircuitState::Open));
        assert_eq!(state("good"), Some(CircuitState::Closed));
        assert_eq!(state("never called"), None);
        assert_eq!(client.circuit_breaker().state(), CircuitState::Closed);
    }
    (good.is_ok(), refused, server.hits())
}

#[tokio::test(start_paused = true)]
async fn a_failing_model_opens_its_own_circuit_and_the_others_flow() {
    // A breaker per model: `good` is served, `bad` refused without a hit.
    assert_eq!(after_one_model_failed(true).await, (true, true, 6));
    // One breaker for the client (the original design): both are refused.
    assert_eq!(after_one_model_failed(false).await, (false, true, 5));
}
