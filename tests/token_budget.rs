//! A call's declared tokens are an estimate: the rate limiter settles them
//! from the usage the provider reports (a buffered answer's, a stream's at its
//! end), and gives them back when the provider charged nothing.

use std::time::Duration;

use stache_resilience::rate_limit::RateLimit;
use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::llm::{Api, Fault, LlmServer};
use test_support::server::{Reply, Server};

/// 6,000 tokens a minute: a call of 5,000 tokens pays for 50 s, one of 50
/// for half a second.
fn config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 0;
    config.rate_limit = Some(RateLimit::tokens_only(6_000));
    config
}

/// Whether a small call fits within 2 s after the first.
async fn next_call_fits(client: &HttpClient) -> bool {
    client
        .get("/next")
        .cost(10)
        .deadline(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| assert!(e.is_rate_limited(), "{e:?}"))
        .is_ok()
}

/// A call declaring 5,000 tokens answered with `body`; then whether a small
/// call fits.
async fn fits_after_an_answer(body: &str) -> bool {
    let server = Server::replies(vec![Reply::json(200, body)]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    client
        .post("/chat", &serde_json::json!({}))
        .cost(5_000)
        .send()
        .await
        .unwrap();
    next_call_fits(&client).await
}

#[tokio::test(start_paused = true)]
async fn a_buffered_answers_usage_settles_its_estimate() {
    let usage =
        r#"{"model":"m","usage":{"prompt_tokens":30,"completion_tokens":20,"total_tokens":50}}"#;
    assert!(
        fits_after_an_answer(usage).await,
        "the estimate of 5,000 stood"
    );
    // An answer that reports no usage keeps the estimate.
    assert!(
        !fits_after_an_answer("{}").await,
        "a call without usage was settled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_gives_its_tokens_back() {
    let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.get("/first").cost(5_000).send().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert!(
        next_call_fits(&client).await,
        "the failed call kept its tokens"
    );
}

#[tokio::test(start_paused = true)]
async fn a_streams_usage_at_its_end_settles_its_estimate() {
    let llm = LlmServer::start(Api::OpenAiChat, "gpt-x", 12, |_| Fault::None).await;
    let mut c = HttpClientConfig::openai("sk-test");
    c.base_url = llm.url();
    c.rate_limit = Some(RateLimit::tokens_only(6_000));
    let client = HttpClient::new(c).unwrap();
    let mut stream = client
        .stream_post(
            "/chat/completions",
            &serde_json::json!({"model": "gpt-x", "stream": true}),
        )
        .cost(5_000)
        .await
        .unwrap();
    while stream.next_event().await.unwrap().is_some() {}
    assert_eq!(stream.usage().map(|u| u.total()), Some(19));
    assert!(next_call_fits(&client).await, "the stream's estimate stood");
}
