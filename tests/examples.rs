//! Every example's logic, run here so that none can rot.

mod support;

#[path = "../examples/sdk_retry.rs"]
#[allow(dead_code)]
mod sdk_retry;

#[path = "../examples/tower_client.rs"]
#[allow(dead_code)]
mod tower_client;

#[path = "../examples/graceful_degradation.rs"]
#[allow(dead_code)]
mod graceful_degradation;

#[path = "../examples/openai_chat_stream.rs"]
#[allow(dead_code)]
mod openai_chat_stream;

#[path = "../examples/anthropic_messages_stream.rs"]
#[allow(dead_code)]
mod anthropic_messages_stream;

use std::time::Duration;

use stache_resilience::retry::RetryConfig;

#[tokio::test(start_paused = true)]
async fn sdk_retry_retries_only_transient_errors() {
    use sdk_retry::SdkError;
    let config = RetryConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        ..RetryConfig::default()
    };
    let summary = sdk_retry::run(config).await;
    assert_eq!(summary.transient, (Ok("item-2".to_owned()), 3));
    assert_eq!(summary.permanent, (Err(SdkError::AccessDenied), 1));
    assert_eq!(summary.exhausted, (Err(SdkError::Throttling), 4));
    assert_eq!(summary.blocking, (Ok("item-1".to_owned()), 2));
}

#[tokio::test]
async fn tower_client_shows_what_each_order_costs_a_dead_server() {
    let (url, hits) = tower_client::dead_server().await.unwrap();
    let summary = tower_client::run(&url, &hits, 6).await;
    // Breaker outside: 4 calls x (1 + 3 retries), then the open circuit refuses.
    assert_eq!(summary.breaker_outside, 16);
    // Retry outside: the circuit opens on the 4th attempt; nothing after that.
    assert_eq!(summary.retry_outside, 4);
}

#[tokio::test]
async fn graceful_degradation_falls_back_while_open_and_returns_to_the_primary() {
    // 20 ms of recovery time: the two fallback calls must fit inside it even on
    // a loaded machine, and it is the only real wait in the test.
    let answers = graceful_degradation::run(Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(
        answers,
        [
            "primary", "error", "error", "fallback", "fallback", "primary", "primary"
        ]
    );
}

#[path = "../examples/ollama_embeddings.rs"]
#[allow(dead_code)]
mod ollama_embeddings;

#[path = "../examples/mixedbread_embeddings.rs"]
#[allow(dead_code)]
mod mixedbread_embeddings;

#[path = "../examples/streaming.rs"]
#[allow(dead_code)]
mod streaming;

#[tokio::test]
async fn ollama_embeddings_batches_checks_health_and_reports_an_outage_as_its_own_error() {
    use ollama_embeddings::{OllamaEmbeddings, ProviderError};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let up = Arc::new(AtomicBool::new(true));
    let batches = Arc::new(AtomicUsize::new(0));
    let url = ollama_embeddings::fake_ollama(up.clone(), batches.clone())
        .await
        .unwrap();
    let registry = stache_resilience::ServiceRegistry::new();
    let mut config = stache_resilience::HttpClientConfig::ollama(url);
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    let provider = OllamaEmbeddings::new(&registry, config, "nomic-embed-text").unwrap();
    assert!(provider.health_check().await);
    let texts: Vec<String> = (0..250).map(|i| format!("text {i}")).collect();
    let embeddings = provider.embed(&texts).await.unwrap();
    assert_eq!(embeddings.len(), 250);
    assert_eq!(
        embeddings[249][0], 49.0,
        "the third batch held texts 200..250"
    );
    assert_eq!(batches.load(Ordering::SeqCst), 3);

    // Down: calls fail until the circuit opens, then the provider says so.
    up.store(false, Ordering::SeqCst);
    assert!(!provider.health_check().await);
    let breaker = provider.client().circuit_breaker().clone();
    for _ in 0..15 {
        breaker.record_failure();
    }
    assert!(matches!(
        provider.embed(&texts).await,
        Err(ProviderError::ServiceUnavailable)
    ));
}

#[tokio::test]
async fn mixedbread_embeddings_sends_the_key_and_never_shows_it() {
    let url = mixedbread_embeddings::fake_mixedbread("sk-test-123")
        .await
        .unwrap();
    let registry = stache_resilience::ServiceRegistry::new();
    let provider =
        mixedbread_embeddings::MixedbreadEmbeddings::new(&registry, "sk-test-123", Some(&url))
            .unwrap();
    let embeddings = provider.embed(&["a", "b", "c"]).await.unwrap();
    assert_eq!(embeddings.len(), 3);
    assert_eq!(provider.client().config().circuit_breaker_threshold, 10);
    let shown = format!("{:?}", provider.client());
    assert!(
        !shown.contains("sk-test-123") && shown.contains("[redacted]"),
        "{shown}"
    );

    // A wrong key is the caller's mistake: not retried, not a breaker failure.
    let registry = stache_resilience::ServiceRegistry::new();
    let wrong = mixedbread_embeddings::MixedbreadEmbeddings::new(&registry, "sk-wrong", Some(&url))
        .unwrap();
    let err = wrong.embed(&["a"]).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(wrong.client().circuit_breaker().stats().failure_count, 0);
}

#[tokio::test]
async fn streaming_prints_tokens_as_they_arrive() {
    let url = streaming::fake_generate().await.unwrap();
    let client =
        stache_resilience::HttpClient::new(stache_resilience::HttpClientConfig::new(url)).unwrap();
    let mut tokens = Vec::new();
    let text = streaming::generate(&client, "m", "hi", |t| tokens.push(t.to_owned()))
        .await
        .unwrap();
    assert_eq!(text, "Resilience is a feature.");
    assert_eq!(tokens.len(), 5);
}

#[path = "../examples/axum_gateway.rs"]
#[allow(dead_code)]
mod axum_gateway;

/// Reads a response body as JSON.
async fn json_of(res: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    use http_body_util::BodyExt;
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn axum_gateway_carries_the_callers_request_id_upstream_and_reports_health() {
    let upstream = axum_gateway::upstream().await.unwrap();
    let registry = stache_resilience::ServiceRegistry::new();
    let provider = registry
        .get_client(
            "ollama",
            stache_resilience::HttpClientConfig::ollama(upstream),
        )
        .unwrap();
    let addr = axum_gateway::serve(axum_gateway::router(provider.clone()))
        .await
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let call = |id: Option<&'static str>| {
        let mut req = http::Request::post(format!("http://{addr}/embed"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"input":["a","b"]}"#,
            )))
            .unwrap();
        if let Some(id) = id {
            req.headers_mut()
                .insert("x-request-id", http::HeaderValue::from_static(id));
        }
        client.request(req)
    };

    // The caller's ID reaches the upstream and comes back on the response.
    let res = call(Some("trace-42")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let body = json_of(res).await;
    assert_eq!(
        body["request_id"], "trace-42",
        "the upstream saw the caller's ID"
    );
    assert_eq!(body["embeddings"].as_array().map(Vec::len), Some(2));

    // Without one, the gateway makes an 8-character ID and uses it upstream too.
    let res = call(None).await.unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 8);
    let body = json_of(res).await;
    assert_eq!(body["request_id"], made.as_str());

    // /health shows the breaker; an open circuit is a 503 for the gateway's callers.
    let health_uri: http::Uri = format!("http://{addr}/health").parse().unwrap();
    let health = json_of(client.get(health_uri.clone()).await.unwrap()).await;
    assert_eq!(health["breaker"], "closed");
    assert_eq!(health["requests"], 2);
    for _ in 0..15 {
        provider.circuit_breaker().record_failure();
    }
    assert_eq!(call(Some("t")).await.unwrap().status(), 503);
    let health = json_of(client.get(health_uri.clone()).await.unwrap()).await;
    assert_eq!(health["breaker"], "open");
}

#[cfg(feature = "tonic")]
#[path = "../examples/grpc_client.rs"]
#[allow(dead_code)]
mod grpc_client;

#[cfg(feature = "tonic")]
#[tokio::test]
async fn grpc_client_retries_unavailable_over_a_channel() {
    let (url, calls) = grpc_client::start_server(2).await.unwrap();
    let (status, breaker) = grpc_client::run(url).await.unwrap();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(breaker.stats().failure_count, 0);
}

#[cfg(feature = "reqwest")]
#[path = "../examples/reqwest_client.rs"]
#[allow(dead_code)]
mod reqwest_client;

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_client_retries_a_503_with_the_layers() {
    let (url, hits) = reqwest_client::start_server(2).await.unwrap();
    let (status, body) = reqwest_client::run(&url).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("embedding"));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// `RUST_LOG=warn cargo run --example quickstart`: every `WARN` line names the
/// call it belongs to. The example's own binary (built by `cargo test` beside
/// the test binaries), run as a user runs it. (A filtered `cargo test --test
/// examples` does not rebuild examples: tests/log_levels.rs checks the same at
/// WARN in process.)
#[test]
fn quickstart_at_warn_names_the_request_on_every_warn_line() {
    let Some(deps) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.to_owned()))
    else {
        panic!("no directory for the test binary");
    };
    let name = format!("quickstart{}", std::env::consts::EXE_SUFFIX);
    let binary = deps
        .parent()
        .map(|target| target.join("examples").join(name));
    let Some(binary) = binary.filter(|path| path.exists()) else {
        panic!(
            "the quickstart example was not built beside {}",
            deps.display()
        );
    };
    let output = std::process::Command::new(&binary)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    // The tour gives up on calls and opens the circuit: both are said at WARN.
    support::assert_warn_lines_name_their_call(
        &text,
        "ollama",
        &["Giving up", "circuit breaker opened"],
    );
}

#[path = "../examples/sse_stream.rs"]
#[allow(dead_code)]
mod sse_stream;

#[tokio::test]
async fn sse_stream_reads_a_completion_sent_one_byte_at_a_time() {
    const WORDS: &[&str] = &["Streams ", "arrive ", "in ", "pieces", "."];
    let url = sse_stream::fake_completions(WORDS).await.unwrap();
    let client =
        stache_resilience::HttpClient::new(stache_resilience::HttpClientConfig::new(url)).unwrap();
    let mut tokens = Vec::new();
    let (text, events) = sse_stream::complete(&client, "m", "hi", |t| tokens.push(t.to_owned()))
        .await
        .unwrap();
    assert_eq!(tokens, WORDS);
    assert_eq!(text, "Streams arrive in pieces.");
    // Five chunks and [DONE]; the comments are no events.
    assert_eq!(events, 6);
}

#[path = "../examples/rate_limited_batch.rs"]
#[allow(dead_code)]
mod rate_limited_batch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_batch_embeds_everything_and_is_never_refused() {
    let (summary, provider) = rate_limited_batch::run(false).await.unwrap();
    assert_eq!(summary.embedded, 1_000);
    assert_eq!(summary.calls, 20);
    assert_eq!(summary.refused_by_server, 0, "{summary:?}");
    assert_eq!(
        provider.accepted.load(std::sync::atomic::Ordering::SeqCst),
        20
    );
    // 20 calls at 10 a second: spaced over about two seconds.
    assert!(
        summary.took >= std::time::Duration::from_millis(1800),
        "{summary:?}"
    );
}

#[path = "../examples/chaos_drill.rs"]
#[allow(dead_code)]
mod chaos_drill;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_drill_keeps_answering_while_the_primary_is_killed() {
    let summary = chaos_drill::run(false).await.unwrap();
    assert_eq!((summary.answered, summary.failed), (40, 0), "{summary:?}");
    // A reset before sending reaches no server: the primary saw only the
    // calls it answered, and the backup took each of the others once.
    assert!(
        summary.by_backup >= 4 && summary.by_primary >= 20,
        "{summary:?}"
    );
    assert_eq!(summary.primary_hits, summary.by_primary, "{summary:?}");
    assert_eq!(summary.backup_hits, summary.by_backup, "{summary:?}");
}

#[tokio::test(start_paused = true)]
async fn openai_chat_stream_restarts_a_cut_answer_whole_on_the_fallback() {
    let answer = openai_chat_stream::demo(false).await.unwrap();
    assert_eq!(answer.text, test_support::llm::text(12));
    assert_eq!(answer.provider.as_deref(), Some("fallback"));
    assert_eq!(answer.model.as_deref(), Some("gpt-4o"));
    assert_eq!(answer.tokens, Some(test_support::llm::INPUT_TOKENS + 12));
    assert_eq!(answer.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn anthropic_messages_stream_moves_an_overloaded_stream_on() {
    let (answer, primary_hits) = anthropic_messages_stream::demo(false).await.unwrap();
    assert_eq!(answer.text, test_support::llm::text(8));
    assert_eq!(answer.provider.as_deref(), Some("fallback"));
    assert_eq!(answer.model.as_deref(), Some("claude-haiku-4-5"));
    assert_eq!(answer.usage, Some((test_support::llm::INPUT_TOKENS, 8)));
    assert!(
        primary_hits <= 2,
        "{primary_hits} calls to the overloaded primary"
    );
}
