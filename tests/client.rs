//! HttpClient against real loopback servers that fail in scripted ways.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use support::{Reply, Server};

/// A config for tests: fast retries, a short per-attempt timeout.
fn config(url: &str) -> HttpClientConfig {
    let mut c = HttpClientConfig::new(url);
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(5);
    c.default_timeout = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn transient_503s_are_ridden_out_with_one_id_per_call() {
    support::init_tracing();
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, r#"{"data":[{"embedding":[0.1,0.2]}]}"#),
        Reply::json(200, "{}"),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();

    let response = client
        .post("/embeddings", &json!({"input": ["a"]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let value: serde_json::Value = response.json().unwrap();
    assert_eq!(value["data"][0]["embedding"][1], 0.2);
    client.get("/health").await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    let ids: Vec<String> = seen.iter().map(|s| s.request_id()).collect();
    assert!(ids[0] == ids[1] && ids[1] == ids[2], "{ids:?}");
    assert_eq!(ids[0], response.request_id().as_str());
    assert_ne!(ids[2], ids[3]);
    assert_eq!(seen[0].path, "/embeddings");
    assert_eq!(seen[0].body.as_ref(), br#"{"input":["a"]}"#);
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert_eq!(seen[3].method, http::Method::GET);

    let stats = client.stats();
    assert_eq!((stats.requests, stats.attempts, stats.retries), (2, 4, 2));
    assert_eq!((stats.failures, stats.rejected, stats.in_flight), (0, 0, 0));
    assert_eq!(stats.circuit_breaker_state, CircuitState::Closed);
}

#[tokio::test]
async fn a_server_error_after_retries_carries_status_headers_and_body() {
    let server = Server::replies(vec![Reply::Full {
        status: 500,
        headers: vec![("x-trace", "t1".into())],
        body: Bytes::from_static(b"model crashed"),
    }])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.post("/embeddings", &json!({})).await.unwrap_err();
    assert_eq!(server.hits(), 4, "1 + max_retries attempts");
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.status(), Some(http::StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(err.headers().unwrap()["x-trace"], "t1");
    assert_eq!(err.body_text(), Some("model crashed"));
    assert!(err.to_string().contains("500") && err.to_string().contains("model crashed"));
    assert_eq!(
        err.request_id().unwrap().as_str(),
        server.seen()[0].request_id()
    );
    let breaker = client.circuit_breaker().stats();
    assert_eq!(breaker.failure_count, 1, "one breaker outcome per call");
    assert_eq!(client.stats().failures, 1);
}

#[tokio::test]
async fn client_errors_are_returned_at_once_and_do_not_count_against_the_breaker() {
    let server = Server::replies(vec![Reply::json(404, r#"{"error":"no such model"}"#)]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.get("/models/x").await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(server.hits(), 1);
    assert_eq!(client.circuit_breaker().stats().failure_count, 0);
}

#[tokio::test]
async fn retry_after_is_read_and_a_wait_beyond_the_cap_is_not_taken() {
    // Retry-After: 1 is more than retry_max_delay (5 ms): no retry, and the
    // caller can read the wait the server asked for.
    let server = Server::replies(vec![Reply::Full {
        status: 429,
        headers: vec![("retry-after", "1".into())],
        body: Bytes::new(),
    }])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.post("/embeddings", &json!({})).await.unwrap_err();
    assert_eq!(server.hits(), 1);
    assert_eq!(err.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(
        client.circuit_breaker().stats().failure_count,
        0,
        "429 means alive"
    );

    // An HTTP-date an hour ahead: same. One in the past: retried at once.
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    let past = "Wed, 21 Oct 2015 07:28:00 GMT".to_owned();
    let server = Server::replies(vec![
        Reply::Full {
            status: 429,
            headers: vec![("retry-after", past)],
            body: Bytes::new(),
        },
        Reply::Full {
            status: 429,
            headers: vec![("retry-after", later)],
            body: Bytes::new(),
        },
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.post("/embeddings", &json!({})).await.unwrap_err();
    assert_eq!(server.hits(), 2);
    let wait = err.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_retried_then_reported() {
    let server = Server::replies(vec![Reply::Drop]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.post("/embeddings", &json!({})).await.unwrap_err();
    assert_eq!(server.hits(), 4);
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(!err.is_connect());
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let closed = support::server::ClosedPort::new();
    let client = HttpClient::new(config(&closed.url())).unwrap();
    let err = client.get("/").await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(!err.is_timeout());
    assert_eq!(client.stats().attempts, 4);
    assert!(err.to_string().starts_with("could not connect"), "{err}");
}

// On the paused clock: a real 40 ms timeout can cut an attempt before the
// server has read it when the machine is loaded.
#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out_each_attempt() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.default_timeout = Duration::from_millis(40);
    c.max_retries = 1;
    let client = HttpClient::new(c).unwrap();
    let started = tokio::time::Instant::now();
    let err = client.get("/slow").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(
        err.to_string(),
        "request timed out after 40ms (default_timeout)"
    );
    assert_eq!(server.hits(), 2);
    assert!(started.elapsed() < Duration::from_secs(1));

    // A per-request override replaces the default.
    let err = client
        .get("/slow")
        .timeout(Duration::from_millis(10))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "request timed out after 10ms (timeout)");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_mid_way_times_out_and_is_retried() {
    let server = Server::replies(vec![
        Reply::Stall {
            status: 200,
            first: Bytes::from_static(b"{\"data\": [1,"),
        },
        Reply::json(200, r#"{"data":[1,2]}"#),
    ])
    .await;
    let mut c = config(&server.url());
    c.default_timeout = Duration::from_millis(50);
    let client = HttpClient::new(c).unwrap();
    let response = client.post("/embeddings", &json!({})).await.unwrap();
    assert_eq!(response.text().unwrap(), r#"{"data":[1,2]}"#);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_then_recovers_through_half_open_probes() {
    support::init_tracing();
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let server = Server::start(move |_, _| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::json(200, "{}")
        } else {
            Reply::Status(503)
        }
    })
    .await;
    let mut c = config(&server.url());
    c.max_retries = 0;
    c.circuit_breaker_threshold = 3;
    c.circuit_breaker_half_open_max_calls = 2;
    let client = HttpClient::new(c).unwrap();

    for _ in 0..3 {
        assert!(client.get("/").await.unwrap_err().is_status());
    }
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    for _ in 0..5 {
        let err = client.get("/").await.unwrap_err();
        assert!(err.is_circuit_open());
        assert_eq!(err.to_string(), "Circuit breaker OPEN - rejecting request");
        assert!(err.request_id().is_some());
    }
    assert_eq!(server.hits(), 3, "nothing reaches the server while open");
    let stats = client.stats();
    assert_eq!(
        (stats.rejected, stats.failures),
        (5, 3),
        "each call counted once"
    );

    // The recovery timeout passes (nothing is in flight, so the clock can jump).
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::time::resume();
    client.get("/").await.unwrap();
    assert_eq!(client.circuit_breaker().state(), CircuitState::HalfOpen);
    client.get("/").await.unwrap();
    assert_eq!(client.circuit_breaker().state(), CircuitState::Closed);
    assert_eq!(server.hits(), 5);
}

#[tokio::test]
async fn bodies_that_are_too_large_or_not_what_was_asked_for_are_clear_errors() {
    let server = Server::replies(vec![Reply::json(200, &"x".repeat(4096))]).await;
    let mut c = config(&server.url());
    c.max_response_bytes = 1024;
    let client = HttpClient::new(c).unwrap();
    let err = client.get("/big").await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert!(err.to_string().contains("max_response_bytes"), "{err}");
    assert_eq!(server.hits(), 1, "a too-large body is not retried");
    assert_eq!(client.circuit_breaker().stats().failure_count, 0);

    let server = Server::replies(vec![Reply::Full {
        status: 200,
        headers: vec![],
        body: Bytes::from_static(b"\xff\xfe not json"),
    }])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let response = client.get("/").await.unwrap();
    assert!(response.text().unwrap_err().is_body());
    let err = response.json::<serde_json::Value>().unwrap_err();
    assert!(err.is_decode());
    assert_eq!(err.request_id(), Some(response.request_id()));
}

#[tokio::test]
async fn bad_endpoints_and_bodies_fail_before_anything_is_sent() {
    let server = Server::replies(vec![Reply::Status(200)]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.get("no-slash").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Request);
    // A URL of its own is no endpoint (a space, by contrast, is escaped and
    // sent: see tests/reqwest_habits.rs).
    let err = client.get("https://other.example/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Request);
    let mut map = std::collections::HashMap::new();
    map.insert(vec![1u8], 1); // a map with non-string keys is not JSON
    let err = client.post("/x", &map).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Request);
    assert_eq!(server.hits(), 0);
    let stats = client.stats();
    assert_eq!(
        (
            stats.requests,
            stats.attempts,
            stats.failures,
            stats.rejected,
            stats.in_flight
        ),
        (3, 0, 3, 0, 0),
        "each counted once, as a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_that_cannot_be_built_gives_its_slot_back() {
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let mut c = config(&server.url());
    c.max_retries = 0;
    c.circuit_breaker_threshold = 1;
    c.circuit_breaker_half_open_max_calls = 1;
    c.circuit_breaker_timeout = Duration::from_secs(5);
    let client = HttpClient::new(c).unwrap();
    assert!(client.get("/").await.unwrap_err().is_status());
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(5)).await;
    // Admitted as the one test call, then refused before anything is sent.
    let err = client.get("no-slash").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Request, "{err:?}");
    // The slot came back: the next call is the test call, and closes the circuit.
    client.get("/").await.unwrap();
    assert_eq!(client.circuit_breaker().state(), CircuitState::Closed);
    assert_eq!(server.hits(), 2);
}

#[test]
fn validation_names_the_field_and_the_rule() {
    let check = |f: fn(&mut HttpClientConfig)| {
        let mut c = HttpClientConfig::new("http://localhost:1");
        f(&mut c);
        HttpClient::new(c).unwrap_err()
    };
    let field = |e: stache_resilience::Error| {
        let source = std::error::Error::source(&e).unwrap();
        source
            .downcast_ref::<stache_resilience::ConfigError>()
            .unwrap()
            .field()
    };
    assert_eq!(field(check(|c| c.base_url = "/v1".into())), "base_url");
    assert_eq!(field(check(|c| c.base_url = "ftp://h".into())), "base_url");
    assert_eq!(
        field(check(|c| c.base_url = "not a url".into())),
        "base_url"
    );
    assert_eq!(
        field(check(|c| c.default_timeout = Duration::ZERO)),
        "default_timeout"
    );
    assert_eq!(
        field(check(|c| c.connect_timeout = Duration::ZERO)),
        "connect_timeout"
    );
    assert_eq!(
        field(check(|c| c.pool_timeout = Duration::ZERO)),
        "pool_timeout"
    );
    assert_eq!(field(check(|c| c.max_connections = 0)), "max_connections");
    assert_eq!(
        field(check(|c| c.max_keepalive_connections = 51)),
        "max_keepalive_connections"
    );
    assert_eq!(
        field(check(|c| c.retry_base_delay = Duration::from_secs(11))),
        "retry_base_delay"
    );
    assert_eq!(
        field(check(|c| c.circuit_breaker_threshold = 0)),
        "circuit_breaker_threshold"
    );
    assert_eq!(
        field(check(|c| c.circuit_breaker_half_open_max_calls = 0)),
        "circuit_breaker_half_open_max_calls"
    );
    let err = check(|c| c.max_connections = 0);
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(
        err.to_string(),
        "invalid max_connections: must be at least 1"
    );
}

#[test]
fn presets_carry_the_documented_values_and_secrets_stay_out_of_debug() {
    let o = HttpClientConfig::ollama("http://localhost:11434");
    assert_eq!(o.default_timeout, Duration::from_secs(90));
    assert_eq!((o.max_retries, o.circuit_breaker_threshold), (3, 15));
    assert_eq!(o.retry_base_delay, Duration::from_secs(1));
    assert_eq!(o.retry_max_delay, Duration::from_secs(10));
    assert_eq!(o.circuit_breaker_timeout, Duration::from_secs(60));
    assert_eq!(o.circuit_breaker_half_open_max_calls, 3);

    let m = HttpClientConfig::mixedbread("sk-secret-123");
    assert_eq!(m.base_url, "https://api.mixedbread.com/v1");
    assert_eq!(m.headers["authorization"], "Bearer sk-secret-123");
    assert_eq!(m.default_timeout, Duration::from_secs(60));
    assert_eq!(m.circuit_breaker_threshold, 10);
    m.validate().unwrap();

    let with_more = m
        .clone()
        .header(
            http::HeaderName::from_static("x-api-key"),
            http::HeaderValue::from_static("k-456"),
        )
        .header(
            http::HeaderName::from_static("x-tenant"),
            http::HeaderValue::from_static("acme"),
        );
    let debug = format!("{with_more:?}");
    assert!(
        !debug.contains("sk-secret-123") && !debug.contains("k-456"),
        "{debug}"
    );
    assert!(
        debug.contains("[redacted]") && debug.contains("acme"),
        "{debug}"
    );

    let bad = HttpClientConfig::mixedbread("line\nbreak");
    assert_eq!(bad.validate().unwrap_err().field(), "headers");
}

#[tokio::test]
async fn the_secret_never_reaches_logs_or_error_output() {
    let server = Server::replies(vec![Reply::Full {
        status: 500,
        headers: vec![("set-cookie", "session=s3cr3t".into())],
        body: Bytes::new(),
    }])
    .await;
    let logs = support::capture_logs();
    let mut c = config(&server.url()).header(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer sk-live-abcdef"),
    );
    c.max_retries = 1;
    let client = HttpClient::for_provider("secret-test", c).unwrap();
    let err = {
        let _guard = logs.install();
        client.post("/embeddings", &json!({})).await.unwrap_err()
    };
    assert_eq!(
        server.seen()[0].headers["authorization"],
        "Bearer sk-live-abcdef"
    );
    let text = logs.text();
    assert!(text.contains("Retrying in"), "logs were captured: {text}");
    for output in [
        text,
        format!("{err:?}"),
        err.to_string(),
        format!("{client:?}"),
    ] {
        assert!(!output.contains("sk-live-abcdef"), "{output}");
        assert!(!output.contains("s3cr3t"), "{output}");
    }
}

#[tokio::test]
async fn every_log_line_of_a_call_carries_its_request_id_and_provider() {
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, "{}"),
        Reply::Status(503),
    ])
    .await;
    let logs = support::capture_logs();
    let mut c = config(&server.url());
    c.max_retries = 0;
    let one_shot = HttpClient::for_provider("ids-one-shot", c).unwrap();
    let client = HttpClient::for_provider("ids-test", config(&server.url())).unwrap();
    let (response, err) = {
        let _guard = logs.install();
        let response = client.post("/embeddings", &json!({})).await.unwrap();
        let err = one_shot.get("/health").await.unwrap_err();
        (response, err)
    };
    let text = logs.text();
    let id = response.request_id().as_str();
    let other = err.request_id().unwrap().as_str();
    assert_ne!(id, other);
    // This crate's lines; hyper-util's connection tasks also log, outside any call.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("stache_resilience"))
        .collect();
    // Two retries and the success of the first call, and at least one line of
    // the second.
    let first: Vec<&&str> = lines.iter().filter(|l| l.contains(id)).collect();
    assert!(
        first.iter().filter(|l| l.contains("Retrying in")).count() == 2,
        "{text}"
    );
    assert!(first.iter().any(|l| l.contains("succeeded")), "{text}");
    assert!(lines.iter().any(|l| l.contains(other)), "{text}");
    for line in &lines {
        let (provider, endpoint) = if line.contains(id) {
            ("ids-test", "/embeddings")
        } else if line.contains(other) {
            ("ids-one-shot", "/health")
        } else {
            panic!("a log line without the call's request ID: {line}\n{text}");
        };
        assert!(line.contains(provider) && line.contains(endpoint), "{line}");
    }
}

#[tokio::test]
async fn every_attempt_sends_the_same_headers_and_per_request_ones_win() {
    use http::{HeaderName, HeaderValue};
    let server = Server::replies(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::json(200, "{}"),
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = config(&server.url()).header(
        HeaderName::from_static("x-team"),
        HeaderValue::from_static("search"),
    );
    c.user_agent = "stache-test/1".into();
    let client = HttpClient::new(c).unwrap();
    let response = client
        .post("/embed", &json!({"input": "a"}))
        .header(
            HeaderName::from_static("x-trace"),
            HeaderValue::from_static("t-1"),
        )
        .header(
            HeaderName::from_static("x-team"),
            HeaderValue::from_static("override"),
        )
        // The request's ID goes out, whatever a header of the same name says.
        .header(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("spoofed"),
        )
        .await
        .unwrap();
    client.get("/plain").await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    for attempt in &seen[..3] {
        let h = &attempt.headers;
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["user-agent"], "stache-test/1");
        assert_eq!(h["x-team"], "override");
        assert_eq!(h["x-trace"], "t-1");
        assert_eq!(h["x-request-id"], response.request_id().as_str());
        assert_eq!(h.get_all("x-request-id").iter().count(), 1);
        assert_eq!(attempt.body.as_ref(), br#"{"input":"a"}"#);
    }
    // The next call starts again from the client's defaults.
    let plain = &seen[3].headers;
    assert_eq!(plain["x-team"], "search");
    assert!(plain.get("x-trace").is_none() && plain.get("content-type").is_none());
    assert_ne!(plain["x-request-id"], response.request_id().as_str());
}

#[tokio::test]
async fn the_request_span_names_the_path_the_request_went_to() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let logs = support::capture_logs();
    let client = HttpClient::new(config(&format!("{}/v1/", server.url()))).unwrap();
    {
        let _on = logs.install();
        client.get("/models?limit=2").await.unwrap();
    }
    assert_eq!(server.seen()[0].path, "/v1/models");
    let spans: Vec<String> = logs
        .events()
        .into_iter()
        .map(|e| e.spans)
        .filter(|s| s.contains("request{"))
        .collect();
    assert!(!spans.is_empty(), "the call logged in its span");
    for span in spans {
        assert!(span.contains("method=GET endpoint=/v1/models"), "{span}");
        assert!(!span.contains('?'), "no query in the span: {span}");
    }
}

#[tokio::test]
async fn every_value_of_a_config_header_is_sent_and_a_config_accept_replaces_the_default() {
    use http::{HeaderName, HeaderValue};
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let c = config(&server.url())
        .header(
            HeaderName::from_static("x-tag"),
            HeaderValue::from_static("a"),
        )
        .header(
            HeaderName::from_static("x-tag"),
            HeaderValue::from_static("b"),
        )
        .header(http::header::ACCEPT, HeaderValue::from_static("text/plain"));
    let client = HttpClient::new(c).unwrap();
    client.get("/v1/models").await.unwrap();
    let seen = server.seen();
    let tags: Vec<_> = seen[0].headers.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["a", "b"]);
    let accepts: Vec<_> = seen[0].headers.get_all("accept").iter().collect();
    assert_eq!(accepts, ["text/plain"]);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_through_the_client_is_one_attempt() {
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let mut c = HttpClientConfig::new(server.url());
    c.max_retries = 3;
    c.retry_base_delay = Duration::from_secs(1);
    c.circuit_breaker_threshold = 1;
    c.circuit_breaker_timeout = Duration::from_secs(10);
    c.circuit_breaker_half_open_max_calls = 1;
    let client = HttpClient::new(c).unwrap();
    let err = client.get("/v1/models").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(server.hits(), 4);
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);

    tokio::time::advance(Duration::from_secs(11)).await;
    let started = tokio::time::Instant::now();
    let err = client.get("/v1/models").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err:?}");
    assert_eq!(server.hits(), 5, "the probe was one attempt");
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no backoff for the probe's caller"
    );
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    let stats = client.stats();
    assert_eq!((stats.attempts, stats.retries), (5, 3));
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_breaker_counts_attempts_opens_during_the_first_calls_retries() {
    let server = Server::replies(vec![Reply::Status(503)]).await;
    let mut c = HttpClientConfig::new(server.url());
    c.max_retries = 5;
    c.circuit_breaker_threshold = 3;
    c.breaker.count_attempts = true;
    let client = HttpClient::new(c).unwrap();
    let err = client.get("/v1/models").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(server.hits(), 3);
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    let err = client.get("/v1/models").await.unwrap_err();
    assert!(err.is_circuit_open(), "{err:?}");
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_counts_attempts_does_not_count_429s() {
    let mut replies = vec![Reply::Status(429); 5];
    replies.push(Reply::json(200, "{}"));
    let server = Server::replies(replies).await;
    let mut c = HttpClientConfig::new(server.url());
    c.max_retries = 5;
    c.circuit_breaker_threshold = 3;
    c.breaker.count_attempts = true;
    let client = HttpClient::new(c).unwrap();
    let res = client.get("/v1/models").await.unwrap();
    assert_eq!(res.status(), 200, "a 429 says slow down, not down");
    assert_eq!(server.hits(), 6);
    assert_eq!(client.circuit_breaker().state(), CircuitState::Closed);
}

#[test]
fn the_openai_and_anthropic_presets_carry_todays_values_and_hide_their_keys() {
    let o = HttpClientConfig::openai("sk-live-123");
    assert_eq!(o.base_url, "https://api.openai.com/v1");
    assert_eq!(o.headers["authorization"], "Bearer sk-live-123");
    assert_eq!(o.max_retries, 3);
    assert_eq!(o.retry_base_delay, Duration::from_millis(500));
    assert_eq!(o.retry_max_delay, Duration::from_secs(8));
    assert!(o.breaker.count_attempts);
    assert_eq!(o.circuit_breaker_timeout, Duration::from_secs(5));
    assert_eq!(o.breaker.wait_while_open, Some(Duration::from_secs(30)));
    assert_eq!(o.health_check.as_ref().unwrap().path, "/models");
    o.validate().unwrap();
    assert!(!format!("{o:?}").contains("sk-live-123"));

    let a = HttpClientConfig::anthropic("ak-live-456");
    assert_eq!(a.base_url, "https://api.anthropic.com/v1");
    assert_eq!(a.headers["x-api-key"], "ak-live-456");
    assert_eq!(a.headers["anthropic-version"], "2023-06-01");
    a.validate().unwrap();
    assert!(!format!("{a:?}").contains("ak-live-456"));

    let bad = HttpClientConfig::anthropic("bad\nkey");
    assert_eq!(bad.validate().unwrap_err().field(), "headers");
    // The original design's presets keep its values.
    let ollama = HttpClientConfig::ollama("http://h");
    assert!(!ollama.breaker.count_attempts);
    assert_eq!(ollama.breaker.wait_while_open, None);
    assert_eq!(ollama.health_check, None);
}

#[tokio::test]
async fn a_preset_pointed_at_a_compatible_server_sends_its_key_there() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut c = HttpClientConfig::anthropic("ak-1");
    c.base_url = server.url();
    let client = HttpClient::new(c).unwrap();
    client.get("/v1/models").await.unwrap();
    let seen = &server.seen()[0].headers;
    assert_eq!(seen["x-api-key"], "ak-1");
    assert_eq!(seen["anthropic-version"], "2023-06-01");
}

/// The wait before the retry after a 5xx with `body` (then a 200), with a
/// backoff of exactly 1 s.
async fn wait_after(status: u16, body: &'static [u8]) -> Duration {
    let server = Server::replies(vec![
        Reply::Full {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from_static(body),
        },
        Reply::json(200, "{}"),
    ])
    .await;
    let mut c = HttpClientConfig::new(server.url());
    c.retry_base_delay = Duration::from_secs(1);
    c.retry.jitter = stache_resilience::retry::Jitter::None;
    let client = HttpClient::new(c).unwrap();
    let started = tokio::time::Instant::now();
    client.get("/v1/models").await.unwrap();
    assert_eq!(server.hits(), 2);
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_provider_is_retried_after_twice_the_backoff() {
    let overloaded = wait_after(
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    )
    .await;
    let failed = wait_after(
        500,
        br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
    )
    .await;
    assert!(
        overloaded >= Duration::from_secs(2) && overloaded < Duration::from_millis(2_100),
        "{overloaded:?}"
    );
    assert!(
        failed >= Duration::from_secs(1) && failed < Duration::from_millis(1_100),
        "{failed:?}"
    );
}
