//! `failover::ProviderGroup` against loopback servers: which failures move a
//! call on to the next provider, which do not, one deadline over the group,
//! each provider's failure kept in the error, and a call reshaped for each
//! provider's API.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stache_resilience::failover::{LogicalRequest, ProviderGroup};
use stache_resilience::http::StatusCode;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{ClosedPort, Reply, Server};

fn client(name: &str, url: &str) -> HttpClient {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 2;
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(50);
    config.default_timeout = Duration::from_millis(500);
    HttpClient::for_provider(name, config).expect("a valid config")
}

async fn ok_server(body: &str) -> Server {
    Server::replies(vec![Reply::json(200, body)]).await
}

#[tokio::test(start_paused = true)]
async fn a_refused_primary_moves_the_call_to_the_secondary() {
    let down = ClosedPort::new();
    let backup = ok_server(r#"{"from":"backup"}"#).await;
    let group = ProviderGroup::new(vec![
        client("primary", &down.url()),
        client("backup", &backup.url()),
    ]);
    let answer = group
        .post("/v1/embed", &json!({"input": ["a"]}))
        .await
        .unwrap();
    assert_eq!(answer.provider(), Some("backup"));
    assert_eq!(
        answer.json::<serde_json::Value>().unwrap()["from"],
        "backup"
    );
    assert_eq!(backup.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_skipped_without_traffic() {
    let primary = ok_server("{}").await;
    let backup = ok_server("{}").await;
    let first = client("primary", &primary.url());
    first.circuit_breaker().force_open();
    let group = ProviderGroup::new(vec![first, client("backup", &backup.url())]);
    let answer = group.get("/v1/models").await.unwrap();
    assert_eq!(answer.provider(), Some("backup"));
    assert_eq!((primary.hits(), backup.hits()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_503_after_the_primarys_retries_moves_on() {
    let primary = Server::replies(vec![Reply::Status(503)]).await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ]);
    let answer = group.get("/v1/models").await.unwrap();
    assert_eq!(answer.provider(), Some("backup"));
    assert_eq!(
        primary.hits(),
        2,
        "a failed answer is retried once at the primary, then the call moves on"
    );

    // The last provider keeps its whole retry schedule: nothing is left to
    // move on to.
    let alone = ProviderGroup::new(vec![client("primary", &primary.url())]);
    alone.get("/v1/models").await.unwrap_err();
    assert_eq!(primary.hits(), 2 + 3);
}

#[tokio::test(start_paused = true)]
async fn a_silent_provider_is_not_tried_again_when_another_can_take_the_call() {
    let silent = Server::replies(vec![Reply::Hang]).await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("silent", &silent.url()),
        client("backup", &backup.url()),
    ]);
    let started = tokio::time::Instant::now();
    let answer = group.get("/v1/models").await.unwrap();
    assert_eq!(answer.provider(), Some("backup"));
    assert_eq!(silent.hits(), 1, "one attempt timeout, not three");
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_whose_wait_passes_the_deadline_moves_on_at_once() {
    let primary = Server::replies(vec![Reply::Full {
        status: 429,
        headers: vec![("retry-after", "60".into())],
        body: Bytes::from_static(b"{}"),
    }])
    .await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ])
    .deadline(Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    let answer = group.get("/v1/models").await.unwrap();
    assert_eq!(answer.provider(), Some("backup"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(primary.hits(), 1, "a 60 s wait does not fit in 5 s");
}

/// OpenAI's answer when the account's credit is spent: a 429, as for a rate.
fn quota_spent() -> Reply {
    Reply::Full {
        status: 429,
        headers: vec![("retry-after-ms", "10".into())],
        body: Bytes::from_static(
            br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        ),
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_moves_on_at_once_and_cools_the_provider_down() {
    let primary = Server::replies(vec![quota_spent()]).await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ])
    .deadline(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let answer = group.get("/v1/models").await.unwrap();
    assert_eq!(answer.provider(), Some("backup"));
    // A short wait would be waited out for a rate; a spent
    // quota is not a rate, and is not asked again.
    assert_eq!(primary.hits(), 1, "not retried");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // The primary cools down: the next calls go straight to the backup,
    // sending the primary nothing.
    for _ in 0..3 {
        let answer = group.get("/v1/models").await.unwrap();
        assert_eq!(answer.provider(), Some("backup"));
    }
    assert_eq!((primary.hits(), backup.hits()), (1, 4));
    // Five minutes on, the primary is asked again.
    tokio::time::sleep(Duration::from_secs(301)).await;
    group.get("/v1/models").await.unwrap();
    assert_eq!(primary.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_alone_fails_after_one_attempt_with_the_providers_answer() {
    let primary = Server::replies(vec![quota_spent()]).await;
    let alone = client("primary", &primary.url());
    let err = alone.get("/v1/models").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS), "{err:?}");
    assert!(err.to_string().contains("insufficient_quota"), "{err}");
    assert_eq!(primary.hits(), 1);
    let breaker = alone.circuit_breaker().stats();
    assert_eq!(
        breaker.state,
        stache_resilience::circuit_breaker::CircuitState::Closed
    );
    // A rate limit's 429 of the same shape is waited out and retried.
    let rate = Server::replies(vec![Reply::Full {
        status: 429,
        headers: vec![("retry-after-ms", "10".into())],
        body: Bytes::from_static(br#"{"error":{"type":"requests","code":"rate_limit_exceeded"}}"#),
    }])
    .await;
    client("rate", &rate.url())
        .get("/v1/models")
        .await
        .unwrap_err();
    assert_eq!(rate.hits(), 3, "the first attempt and its 2 retries");
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_moves_on_and_cools_the_provider_down_for_any_call() {
    let primary = Server::replies(vec![Reply::Full {
        status: 401,
        headers: vec![],
        body: Bytes::from_static(
            br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        ),
    }])
    .await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ]);
    // Not safe to repeat, and still moved on: the key was refused, the call
    // was not processed.
    let call = || {
        group
            .post("/v1/messages", &json!({"model": "m"}))
            .idempotent(false)
    };
    assert_eq!(call().await.unwrap().provider(), Some("backup"));
    assert_eq!(call().await.unwrap().provider(), Some("backup"));
    assert_eq!(
        (primary.hits(), backup.hits()),
        (1, 2),
        "the primary cools down"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_says_what_the_provider_meant_by_name() {
    use stache_resilience::provider::ProviderErrorKind;
    let server = Server::replies(vec![Reply::Full {
        status: 400,
        headers: vec![],
        body: Bytes::from_static(
            br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        ),
    }])
    .await;
    let err = client("p", &server.url())
        .post("/v1/chat/completions", &json!({}))
        .await
        .unwrap_err();
    let named = err.provider_error().expect("a named error");
    assert_eq!(named.kind(), ProviderErrorKind::ContextLengthExceeded);
    assert_eq!(named.code(), Some("context_length_exceeded"));
    assert!(named.message().unwrap().contains("128000"));
    assert_eq!(server.hits(), 1, "a caller's mistake is not retried");
    // A body of no known API names nothing.
    let plain = Server::replies(vec![Reply::Status(503)]).await;
    let err = client("q", &plain.url()).get("/").await.unwrap_err();
    assert_eq!(err.provider_error(), None);
}

fn context_too_long() -> Reply {
    Reply::Full {
        status: 400,
        headers: vec![],
        body: Bytes::from_static(
            br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        ),
    }
}

#[tokio::test(start_paused = true)]
async fn a_prompt_too_long_goes_to_the_next_provider_with_a_larger_window() {
    use stache_resilience::provider::ProviderErrorKind;
    let small = Server::replies(vec![context_too_long()]).await;
    let unknown = ok_server(r#"{"from":"unknown"}"#).await;
    let same = Server::replies(vec![context_too_long()]).await;
    let large = ok_server(r#"{"from":"large"}"#).await;
    let group = ProviderGroup::new(vec![client("small", &small.url())])
        .context_window(8_192)
        .then(client("unknown", &unknown.url()))
        .then(client("same", &same.url()))
        .context_window(8_192)
        .then(client("large", &large.url()))
        .context_window(128_000);
    // Not safe to repeat, and moved on all the same: nothing was processed.
    let answer = group
        .post("/v1/chat/completions", &json!({"messages": []}))
        .idempotent(false)
        .await
        .unwrap();
    assert_eq!(answer.provider(), Some("large"));
    assert_eq!(
        (small.hits(), unknown.hits(), same.hits(), large.hits()),
        (1, 0, 0, 1),
        "only a larger window is asked"
    );
    // With no larger window left, the call ends with the error, named.
    let alone = ProviderGroup::new(vec![client("small", &small.url())])
        .context_window(8_192)
        .then(client("same", &same.url()))
        .context_window(8_192);
    let err = alone
        .post("/v1/chat/completions", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.provider(), Some("small"));
    let kinds: Vec<_> = err
        .attempts()
        .iter()
        .map(|f| f.provider_error().map(|e| e.kind()))
        .collect();
    assert_eq!(kinds, vec![Some(ProviderErrorKind::ContextLengthExceeded)]);
    assert_eq!(same.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_content_filter_is_final_and_says_why() {
    use stache_resilience::provider::ProviderErrorKind;
    let primary = Server::replies(vec![Reply::Full {
        status: 400,
        headers: vec![],
        body: Bytes::from_static(
            br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
        ),
    }])
    .await;
    let backup = ok_server("{}").await;
    // Even a predicate that would move on after anything does not.
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ])
    .move_on_when(|_| true);
    let err = group
        .post("/v1/chat/completions", &json!({}))
        .await
        .unwrap_err();
    let named = err.provider_error().expect("named");
    assert_eq!(named.kind(), ProviderErrorKind::ContentFiltered);
    assert!(
        named
            .message()
            .unwrap()
            .contains("content management policy")
    );
    assert_eq!((primary.hits(), backup.hits()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_callers_predicate_moves_on_after_an_error_the_next_model_may_not_have() {
    let small = Server::replies(vec![Reply::json(
        400,
        r#"{"error":{"code":"context_length_exceeded"}}"#,
    )])
    .await;
    let large = ok_server("{}").await;
    let clients = || vec![client("small", &small.url()), client("large", &large.url())];

    // Without the predicate a 400 is the caller's answer.
    let err = ProviderGroup::new(clients())
        .post("/v1/chat", &json!({"messages": []}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(err.provider(), Some("small"));
    assert_eq!(large.hits(), 0);

    let group = ProviderGroup::new(clients()).move_on_when(|e| {
        e.body_text()
            .is_some_and(|b| b.contains("context_length_exceeded"))
    });
    let answer = group
        .post("/v1/chat", &json!({"messages": []}))
        .await
        .unwrap();
    assert_eq!(answer.provider(), Some("large"));
    assert_eq!((small.hits(), large.hits()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn when_every_provider_fails_the_error_lists_each() {
    let down = ClosedPort::new();
    let failing = Server::replies(vec![Reply::Status(503)]).await;
    let open = ok_server("{}").await;
    let third = client("third", &open.url());
    third.circuit_breaker().force_open();
    let group = ProviderGroup::new(vec![
        client("first", &down.url()),
        client("second", &failing.url()),
        third,
    ]);
    let err = group.get("/v1/models").await.unwrap_err();
    assert!(err.is_circuit_open(), "{err:?}");
    assert_eq!(err.provider(), Some("third"));
    let tried: Vec<_> = err
        .attempts()
        .iter()
        .map(|a| (a.provider().to_owned(), a.kind(), a.status()))
        .collect();
    assert_eq!(
        tried,
        vec![
            ("first".to_owned(), ErrorKind::Connect, None),
            (
                "second".to_owned(),
                ErrorKind::Status,
                Some(StatusCode::SERVICE_UNAVAILABLE)
            ),
            ("third".to_owned(), ErrorKind::CircuitOpen, None),
        ]
    );
    assert_eq!(open.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_first_line_is_not_moved() {
    let primary = Server::replies(vec![Reply::Break {
        status: 200,
        first: Bytes::from_static(b"{\"token\":\"Hel\"}\n"),
    }])
    .await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ]);
    let mut stream = group
        .stream_post("/v1/generate", &json!({"prompt": "hi"}))
        .await
        .unwrap();
    assert_eq!(stream.provider(), Some("primary"));
    assert_eq!(
        stream.next_line().await.unwrap().as_deref(),
        Some(r#"{"token":"Hel"}"#)
    );
    assert!(
        stream.next_line().await.is_err(),
        "the break is the caller's"
    );
    assert_eq!(backup.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_not_safe_to_repeat_stays_after_a_timeout() {
    let primary = Server::replies(vec![Reply::Hang]).await;
    let backup = ok_server("{}").await;
    let group = ProviderGroup::new(vec![
        client("primary", &primary.url()),
        client("backup", &backup.url()),
    ]);
    let err = group
        .post("/v1/charge", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.attempts().len(), 1);
    assert_eq!((primary.hits(), backup.hits()), (1, 0));

    // But one refused before anything was sent moves on, even so.
    let down = ClosedPort::new();
    let group = ProviderGroup::new(vec![
        client("primary", &down.url()),
        client("backup", &backup.url()),
    ]);
    let answer = group
        .post("/v1/charge", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap();
    assert_eq!(answer.provider(), Some("backup"));
}

#[tokio::test(start_paused = true)]
async fn one_deadline_spans_the_group() {
    let primary = Server::replies(vec![Reply::Hang]).await;
    let backup = ok_server("{}").await;
    let mut slow = HttpClientConfig::new(primary.url());
    slow.default_timeout = Duration::from_secs(10);
    let group = ProviderGroup::new(vec![
        HttpClient::for_provider("primary", slow).unwrap(),
        client("backup", &backup.url()),
    ]);
    let started = tokio::time::Instant::now();
    let err = group
        .get("/v1/models")
        .deadline(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.is_deadline(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(backup.hits(), 0, "no time was left for the backup");
}

#[tokio::test(start_paused = true)]
async fn each_provider_is_sent_the_call_in_its_own_terms() {
    let down = ClosedPort::new();
    let cloud = ok_server("{}").await;
    let group = ProviderGroup::new(vec![client("ollama", &down.url())]).shaped(
        client("cloud", &cloud.url()),
        |call: &LogicalRequest| {
            let mut call = call.clone();
            call.endpoint = "/v1/embeddings".into();
            if let Some(json) = call.json.as_mut() {
                json["model"] = "large-embedder".into();
            }
            call
        },
    );
    assert_eq!(group.providers().collect::<Vec<_>>(), ["ollama", "cloud"]);
    let answer = group
        .post(
            "/api/embed",
            &json!({"model": "nomic-embed-text", "input": ["a"]}),
        )
        .await
        .unwrap();
    assert_eq!(answer.provider(), Some("cloud"));
    let seen = cloud.seen();
    assert_eq!(seen[0].path, "/v1/embeddings");
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body, json!({"model": "large-embedder", "input": ["a"]}));
}

#[tokio::test(start_paused = true)]
async fn an_empty_group_fails_with_a_configuration_error() {
    let err = ProviderGroup::new(Vec::new()).get("/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test(start_paused = true)]
async fn a_failover_reports_the_fallbacks_model_and_usage() {
    let primary = Server::replies(vec![Reply::Status(503)]).await;
    let backup = Server::replies(vec![Reply::json(
        200,
        r#"{"id":"msg_1","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":11,"output_tokens":3,"cache_read_input_tokens":0}}"#,
    )])
    .await;
    let group = ProviderGroup::new(vec![
        client("openai", &primary.url()),
        client("anthropic", &backup.url()),
    ]);
    let answer = group
        .post("/v1/chat/completions", &json!({"model": "gpt-4o-mini"}))
        .await
        .unwrap();
    assert_eq!(answer.provider(), Some("anthropic"));
    assert_eq!(answer.model().as_deref(), Some("claude-haiku-4-5"));
    let usage = answer.usage().expect("usage");
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.total()),
        (11, 3, 14)
    );
    assert_eq!(usage.cached_tokens, Some(0));
}
