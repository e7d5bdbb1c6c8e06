//! The client's rate limiting against loopback servers: a configured limit
//! that is fair to every caller, token costs, a wait that cannot fit refused
//! before anything is sent, and the limits that OpenAI-style and
//! Anthropic-style headers report.

use std::time::{Duration, Instant, SystemTime};

use stache_resilience::rate_limit::{ColdStart, RateLimit};
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{Reply, Server};

fn config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_secs(5);
    config
}

fn limited(headers: &[(&'static str, &str)]) -> Reply {
    Reply::Full {
        status: 200,
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        body: bytes::Bytes::from_static(b"{}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_each_get_their_turn_within_the_deadline() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    // 20 a second: 64 calls need 3.2 s, each may take 5 s.
    c.rate_limit = Some(RateLimit::per_minute(1_200));
    c.retry.total_timeout = Some(Duration::from_secs(5));
    let client = HttpClient::new(c).unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let call = client.get(format!("/item/{i}")).send();
            tokio::spawn(async move {
                let result = call.await;
                (result.map(|_| ()), started.elapsed())
            })
        })
        .collect();
    let mut finished = Vec::new();
    for call in calls {
        let (result, at) = call.await.unwrap();
        result.expect("every caller got its turn");
        finished.push(at);
    }
    let last = finished.iter().max().unwrap();
    assert!(*last < Duration::from_secs(5), "{finished:?}");
    // Evenly spaced: 64 calls took at least 63 intervals of 50 ms.
    assert!(*last >= Duration::from_millis(63 * 50 - 20), "{last:?}");
    assert_eq!(server.hits(), 64);
    assert_eq!(client.stats().rate_limit.refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_fit_its_deadline_fails_at_once_and_sends_nothing() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    // 6,000 tokens a minute: a call of 5,000 tokens pays for 50 s.
    c.rate_limit = Some(RateLimit::tokens_only(6_000));
    let client = HttpClient::new(c).unwrap();
    client.get("/first").cost(5_000).send().await.unwrap();
    let started = Instant::now();
    let err = client
        .get("/second")
        .cost(10)
        .deadline(Duration::from_secs(2))
        .send()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "it waited");
    assert!(err.is_rate_limited(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    assert_eq!(server.hits(), 1, "the refused call sent nothing");
    assert_eq!(client.stats().rate_limit.refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_that_opens_after_the_deadline_refuses_the_call_at_once() {
    let server = Server::replies(vec![
        Reply::Full {
            status: 429,
            headers: vec![("retry-after", "5".into())],
            body: bytes::Bytes::new(),
        },
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = config(&server.url());
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    let err = client.get("/first").send().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429));
    // The gate is closed for 5 s: the stack is not ready (the limiter's
    // readiness), and a call that must start within 1 s is refused at once
    // rather than left to wait for its deadline.
    let started = Instant::now();
    let err = client
        .get("/second")
        .deadline(Duration::from_secs(1))
        .send()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "it waited");
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err:?}");
    assert_eq!(server.hits(), 1, "the refused call sent nothing");
    assert_eq!(client.stats().rate_limit.refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_quota_spent_holds_the_next_call_until_its_reset() {
    let server = Server::replies(vec![
        limited(&[
            ("x-ratelimit-limit-requests", "3"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "800ms"),
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "990"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]),
        Reply::json(200, "{}"),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    client.get("/a").send().await.unwrap();
    let started = Instant::now();
    client.get("/b").send().await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(790), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    assert_eq!(client.stats().rate_limit.waited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_quota_spent_holds_the_next_call_until_its_reset() {
    // A reset written as RFC 3339, a second and a half from now.
    let reset = httpdate_rfc3339(SystemTime::now() + Duration::from_millis(1500));
    let server = Server::replies(vec![
        limited(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "0"),
            ("anthropic-ratelimit-output-tokens-reset", &reset),
        ]),
        Reply::json(200, "{}"),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    client.get("/a").send().await.unwrap();
    let started = Instant::now();
    client.get("/b").send().await.unwrap();
    let waited = started.elapsed();
    // Whole seconds in the header: the reset is 0.5–1.5 s away.
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_rate_limit_headers_change_nothing() {
    let junk: Vec<Reply> = vec![
        limited(&[
            ("x-ratelimit-limit-requests", "0"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "5s"),
        ]),
        limited(&[
            ("x-ratelimit-remaining-requests", "-1"),
            ("x-ratelimit-reset-requests", "5s"),
        ]),
        limited(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "soon"),
        ]),
        limited(&[
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2001-01-01T00:00:00Z"),
        ]),
        limited(&[
            ("x-ratelimit-remaining-requests", ""),
            ("x-ratelimit-reset-requests", ""),
        ]),
        Reply::json(200, "{}"),
    ];
    let server = Server::replies(junk).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let started = Instant::now();
    for _ in 0..6 {
        client.get("/").send().await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a junk header held a call"
    );
    assert_eq!(client.stats().rate_limit.waited, 0);
    assert_eq!(client.stats().rate_limit.gate_closed_for, None);
}

/// `SystemTime` as RFC 3339 in UTC, whole seconds.
fn httpdate_rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A provider that takes 2 requests a second (one every 500 ms, on tokio's
/// clock) and answers the rest 429 with `Retry-After: 1`.
async fn two_per_second() -> Server {
    let next = std::sync::Mutex::new(tokio::time::Instant::now());
    Server::start(move |_, _| {
        let now = tokio::time::Instant::now();
        let mut next = next.lock().unwrap();
        if now >= *next {
            *next = now + Duration::from_millis(500);
            Reply::json(200, "{}")
        } else {
            Reply::Full {
                status: 429,
                headers: vec![("retry-after", "1".into())],
                body: bytes::Bytes::new(),
            }
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn twenty_callers_against_two_a_second_are_all_served_when_retries_would_have_saved_them() {
    let server = two_per_second().await;
    let mut c = HttpClientConfig::new(server.url());
    c.retry_max_delay = Duration::from_secs(2);
    c.max_retries = 10;
    c.retry.budget = false;
    let client = HttpClient::new(c).unwrap();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("/v1/models/{i}")).await })
        })
        .collect();
    let mut served = 0;
    let mut errors = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => served += 1,
            Err(e) => errors.push(format!("{e}")),
        }
    }
    assert_eq!(served, 20, "{errors:?} ({:?})", client.stats().rate_limit);
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_retry_the_limiter_refuses_ends_with_its_last_real_answer() {
    // A 429 asking for 1 s turns the pace on; the next call's first attempt
    // meets a 503, and the pace would hold its retry past its 1.5 s deadline.
    let server = Server::start(|n, _| match n {
        0 => Reply::Full {
            status: 429,
            headers: vec![("retry-after", "1".into())],
            body: bytes::Bytes::new(),
        },
        _ => Reply::Full {
            status: 503,
            headers: vec![],
            body: bytes::Bytes::from_static(b"overloaded"),
        },
    })
    .await;
    let mut c = config(&server.url());
    c.max_retries = 3;
    c.retry_base_delay = Duration::from_millis(100);
    let client = HttpClient::new(c).unwrap();
    let first = client.get("/v1/models").idempotent(true);
    let _ = first.timeout(Duration::from_secs(5)).send().await;
    let hits = server.hits();
    let err = client
        .get("/v1/models")
        .deadline(Duration::from_millis(1_500))
        .send()
        .await
        .unwrap_err();
    assert!(server.hits() > hits, "something was sent");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err:?}");
    assert!(!err.is_rate_limited(), "{err:?}");
}

/// A provider that takes 2 requests a second with a burst of 2, as a token
/// bucket (GCRA, on tokio's clock), and answers the rest 429 with OpenAI's
/// `retry-after-ms` (the time until the next request fits); it counts the
/// attempts.
async fn bucket_of_two() -> Server {
    let tat = std::sync::Mutex::new(tokio::time::Instant::now());
    Server::start(move |_, _| {
        let now = tokio::time::Instant::now();
        let interval = Duration::from_millis(500);
        let mut tat = tat.lock().unwrap();
        let at = (*tat).max(now);
        if at > now + interval {
            let wait = at - interval - now;
            Reply::Full {
                status: 429,
                headers: vec![("retry-after-ms", wait.as_millis().max(1).to_string())],
                body: bytes::Bytes::new(),
            }
        } else {
            *tat = at + interval;
            Reply::json(200, "{}")
        }
    })
    .await
}

async fn cold_burst(cold: Option<ColdStart>) -> (usize, usize) {
    let server = bucket_of_two().await;
    let mut c = HttpClientConfig::new(server.url());
    c.max_retries = 10;
    c.retry_base_delay = Duration::from_millis(500);
    c.retry_max_delay = Duration::from_secs(8);
    c.retry.budget = false;
    c.cold_start = cold;
    let client = HttpClient::new(c).unwrap();
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .get(format!("/v1/models/{i}"))
                    .deadline(Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    let mut served = 0;
    for call in calls {
        served += usize::from(call.await.unwrap().is_ok());
    }
    (served, server.hits())
}

#[tokio::test(start_paused = true)]
async fn a_cold_burst_against_an_unknown_limit_costs_about_one_attempt_per_call() {
    let (served, attempts) = cold_burst(Some(ColdStart::new(2, 64))).await;
    assert_eq!(served, 60);
    assert!(attempts <= 72, "{attempts} attempts for 60 calls");
    // Without a window, the whole burst goes out before the first answer.
    let (served, attempts) = cold_burst(None).await;
    assert_eq!(served, 60);
    assert!(attempts > 100, "{attempts}");
}

#[tokio::test(start_paused = true)]
async fn callers_dropped_while_they_wait_for_or_hold_a_place_give_it_back() {
    let server = Server::replies(vec![Reply::Late {
        after: Duration::from_secs(10),
        reply: Box::new(Reply::json(200, "{}")),
    }])
    .await;
    let mut c = HttpClientConfig::new(server.url());
    c.cold_start = Some(ColdStart::new(2, 64));
    let client = HttpClient::new(c).unwrap();
    let window = || client.rate_limiter().stats().window.unwrap();
    // Two hold the places (their answers are late); two wait for one.
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("/v1/models/{i}")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(window(), (2, 2));
    assert_eq!(server.hits(), 2, "the others wait for a place");
    // Dropped while waiting for a place: nothing taken, nothing sent.
    let mut calls = calls;
    for call in calls.drain(2..).rev() {
        call.abort();
        let _ = call.await;
    }
    tokio::task::yield_now().await;
    assert_eq!(window(), (2, 2));
    // Dropped while holding one (the attempt in flight): given back, and
    // no waiter left to take it.
    for call in calls {
        call.abort();
        let _ = call.await;
    }
    assert_eq!(window(), (2, 0), "every place given back");
    assert_eq!(server.hits(), 2);
    // The places serve the next callers at once.
    let started = tokio::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_millis(100), client.get("/v1/models/9")).await;
    assert_eq!(server.hits(), 3);
    assert!(started.elapsed() <= Duration::from_millis(100));
}

#[test]
fn a_cold_start_is_checked_and_read_from_settings() {
    let mut c = HttpClientConfig::new("http://127.0.0.1:9");
    c.cold_start = Some(ColdStart::new(0, 4));
    assert_eq!(c.validate().unwrap_err().field(), "cold_start");
    c.cold_start = Some(ColdStart::new(8, 4));
    assert_eq!(c.validate().unwrap_err().field(), "cold_start");
    assert_eq!(
        HttpClientConfig::openai("k").cold_start,
        Some(ColdStart::new(2, 64))
    );
    assert_eq!(HttpClientConfig::ollama("http://h").cold_start, None);
}

#[tokio::test(start_paused = true)]
async fn a_call_held_for_its_turn_logs_the_real_wait() {
    let logs = test_support::capture::Capture::new();
    let _guard = logs.install();
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = HttpClientConfig::new(server.url());
    c.rate_limit = Some(RateLimit::per_minute(30));
    let client = HttpClient::new(c).unwrap();
    client.get("/v1/models").await.unwrap();
    client.get("/v1/models").await.unwrap();
    let waits: Vec<f64> = logs
        .events()
        .iter()
        .filter(|e| e.level == tracing::Level::INFO && e.message.contains("for its turn"))
        .map(|e| e.field("wait_secs").unwrap().parse().unwrap())
        .collect();
    assert_eq!(waits.len(), 1, "one call waited");
    assert!(
        (1.9..2.2).contains(&waits[0]),
        "one per 2 s: the second call waited about 2 s, not {waits:?}"
    );
}

/// A provider whose model `busy` is throttled for a minute while `idle`
/// answers at once: the `model` field of the JSON body says which.
async fn one_model_throttled() -> Server {
    Server::start(|_, seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"busy\"") {
            Reply::Full {
                status: 429,
                headers: vec![("retry-after", "60".into())],
                body: bytes::Bytes::new(),
            }
        } else {
            Reply::json(200, "{}")
        }
    })
    .await
}

/// After a `429` for model `busy`: the outcome of a call to `idle` with a
/// 1 s deadline, and of one to `busy`, as `(served, refused, sent)`.
async fn after_one_model_throttled(per_model: bool) -> (bool, bool, usize) {
    let server = one_model_throttled().await;
    let mut c = config(&server.url());
    c.max_retries = 0;
    c.rate_limit_per_model = per_model;
    let client = HttpClient::new(c).unwrap();
    let body = |model: &str| serde_json::json!({ "model": model, "input": "hi" });
    let err = client.post("/embeddings", &body("busy")).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429), "{err:?}");
    let started = tokio::time::Instant::now();
    let idle = client
        .post("/embeddings", &body("idle"))
        .deadline(Duration::from_secs(1))
        .await;
    let busy = client
        .post("/embeddings", &body("busy"))
        .deadline(Duration::from_secs(1))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a call waited"
    );
    let refused = busy.as_ref().is_err_and(|e| e.is_rate_limited());
    let sent = server.hits();
    if per_model {
        let stats = client
            .rate_limiter()
            .model_stats("busy")
            .expect("busy is kept apart");
        assert!(stats.gate_closed_for.is_some(), "{stats:?}");
        let idle_stats = client
            .rate_limiter()
            .model_stats("idle")
            .expect("idle is kept apart");
        assert_eq!(idle_stats.gate_closed_for, None, "{idle_stats:?}");
        assert_eq!(client.stats().rate_limit.throttled, 1);
    }
    (idle.is_ok(), refused, sent)
}

#[tokio::test(start_paused = true)]
async fn a_429_for_one_model_holds_back_that_model_alone() {
    // Per model: the idle model is served at once, the throttled one is
    // refused before anything is sent (its gate is closed for 60 s).
    assert_eq!(after_one_model_throttled(true).await, (true, true, 2));
    // One gate per client (the original design): both are refused.
    assert_eq!(after_one_model_throttled(false).await, (false, true, 1));
}

#[tokio::test(start_paused = true)]
async fn the_presets_key_the_gate_by_model_and_a_call_can_name_its_own() {
    let server = one_model_throttled().await;
    let mut c = HttpClientConfig::openai("sk-test");
    c.base_url = server.url();
    c.max_retries = 0;
    c.health_check = None;
    assert!(c.rate_limit_per_model);
    let client = HttpClient::new(c).unwrap();
    let err = client
        .post("/chat/completions", &serde_json::json!({ "model": "busy" }))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429), "{err:?}");
    // A body without a model field, named by the builder: kept apart too.
    let err = client
        .request(http::Method::POST, "/chat/completions")
        .body("not json")
        .model("busy")
        .deadline(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is_rate_limited(), "{err:?}");
    client
        .post(
            "/chat/completions",
            &serde_json::json!({ "model": "other" }),
        )
        .deadline(Duration::from_secs(1))
        .await
        .expect("another model is not held back");
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_holds_back_every_model_of_the_account() {
    let server = Server::start(|_, seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"busy\"") {
            Reply::Full {
                status: 429,
                headers: vec![],
                body: bytes::Bytes::from_static(
                    br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#,
                ),
            }
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let mut c = HttpClientConfig::openai("sk-test");
    c.base_url = server.url();
    c.health_check = None;
    let client = HttpClient::new(c).unwrap();
    let call = |model: &'static str| {
        client
            .post("/chat/completions", &serde_json::json!({ "model": model }))
            .deadline(Duration::from_secs(10))
    };
    assert_eq!(call("other").await.unwrap().status().as_u16(), 200);
    let err = call("busy").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429), "{err:?}");
    assert_eq!(server.hits(), 2, "a spent quota is not retried");
    // Not a rate of one model: the account's credit. Every model waits, and
    // the refusal says why.
    let err = call("other").await.unwrap_err();
    assert!(err.is_rate_limited(), "{err:?}");
    assert!(
        err.to_string()
            .contains("refused the account (quota_exhausted)"),
        "{err}"
    );
    assert_eq!(server.hits(), 2, "the refused call sent nothing");
}
