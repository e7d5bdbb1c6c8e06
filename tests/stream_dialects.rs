//! Stream dialects at the client and in a stack of one's own: Ollama's NDJSON
//! read line by line, a call's own dialect, the gap between content events
//! that keep-alives do not reset, settings files, and `FirstToken` under a
//! `RetryLayer` over a service of one's own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stache_resilience::provider::ProviderErrorKind;
use stache_resilience::provider::dialect::{AnthropicMessages, OpenAiResponses, StreamDialect};
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{End, Reply, Server};

fn timed(content_type: &str, chunks: &[&str], gap: Duration, end: End) -> Reply {
    Reply::Timed {
        status: 200,
        headers: vec![("content-type", content_type.to_owned())],
        chunks: chunks
            .iter()
            .map(|c| (gap, Bytes::copy_from_slice(c.as_bytes())))
            .collect(),
        end,
    }
}

const OLLAMA: &[&str] = &[
    "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
    "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
    "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":26,\"eval_count\":2}\n",
];

#[tokio::test(start_paused = true)]
async fn ollamas_lines_end_whole_or_as_a_truncation_error() {
    let server = Server::replies(vec![
        timed(
            "application/x-ndjson",
            OLLAMA,
            Duration::from_millis(5),
            End::Finish,
        ),
        timed(
            "application/x-ndjson",
            &OLLAMA[..2],
            Duration::from_millis(5),
            End::Finish,
        ),
    ])
    .await;
    let client = HttpClient::new(HttpClientConfig::ollama(server.url())).unwrap();
    let body = json!({"model": "llama3.2", "messages": []});

    let mut stream = client.stream_post("/api/chat", &body).await.unwrap();
    let mut lines = 0;
    while stream.next_line().await.unwrap().is_some() {
        lines += 1;
    }
    assert_eq!(lines, 3);
    assert!(stream.is_complete());
    assert_eq!(
        (stream.model(), stream.content_events()),
        (Some("llama3.2"), 2)
    );
    assert_eq!(
        stream.usage().map(|u| (u.input_tokens, u.output_tokens)),
        Some((26, 2))
    );

    // The same answer without its last line: never a clean end.
    let mut stream = client.stream_post("/api/chat", &body).await.unwrap();
    let error = loop {
        match stream.next_line().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a stream without `done: true` ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind(), ErrorKind::Body);
    assert!(error.to_string().contains("truncated"), "{error}");
    assert_eq!(error.stream_cut().and_then(|c| c.content_events()), Some(2));
    let again = stream.next_line().await.unwrap_err();
    assert!(
        again.to_string().contains("stream already failed"),
        "{again}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_inside_a_stream_after_content_is_named() {
    let mut chunks = OLLAMA[..1].to_vec();
    chunks
        .push("{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n");
    let server = Server::replies(vec![timed(
        "application/x-ndjson",
        &chunks,
        Duration::from_millis(5),
        End::Finish,
    )])
    .await;
    let client = HttpClient::new(HttpClientConfig::ollama(server.url())).unwrap();
    let mut stream = client
        .stream_post("/api/chat", &json!({"model": "llama3.2"}))
        .await
        .unwrap();
    assert!(stream.next_line().await.unwrap().is_some());
    let error = stream.next_line().await.unwrap_err();
    let named = error.provider_error().expect("a named error");
    assert_eq!(named.kind(), ProviderErrorKind::ServerError);
    assert!(named.message().unwrap().contains("unexpected EOF"));
    assert_eq!(error.status().map(|s| s.as_u16()), Some(500));
}

const RESPONSES_FAILED: &[&str] = &[
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"status\":\"in_progress\"}}\n\n",
    "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"The model failed\"}}}\n\n",
];

const RESPONSES_WHOLE: &[&str] = &[
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"status\":\"in_progress\"}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
];

#[tokio::test(start_paused = true)]
async fn a_calls_own_dialect_retries_an_error_sent_before_any_content() {
    let server = Server::replies(vec![
        timed(
            "text/event-stream",
            RESPONSES_FAILED,
            Duration::ZERO,
            End::Finish,
        ),
        timed(
            "text/event-stream",
            RESPONSES_WHOLE,
            Duration::ZERO,
            End::Finish,
        ),
    ])
    .await;
    let mut config = HttpClientConfig::new(server.url());
    config.retry_base_delay = Duration::from_millis(10);
    let client = HttpClient::new(config).unwrap();
    let mut stream = client
        .post("/responses", &json!({"model": "gpt-4.1", "stream": true}))
        .stream()
        .dialect(OpenAiResponses)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await.unwrap() {
        events.push(event.event().to_owned());
    }
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(server.hits(), 2, "the failed stream was retried");
    assert_eq!(stream.model(), Some("gpt-4.1"));
    assert_eq!(stream.usage().map(|u| u.total()), Some(6));

    // Without a dialect, the same failure is handed over as a 200 stream.
    let server = Server::replies(vec![timed(
        "text/event-stream",
        RESPONSES_FAILED,
        Duration::ZERO,
        End::Finish,
    )])
    .await;
    let client = HttpClient::new(HttpClientConfig::new(server.url())).unwrap();
    let stream = client.post("/responses", &json!({})).stream().await;
    assert!(stream.is_ok(), "without a dialect an in-band error is data");
}

const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
const TEXT_DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";

/// An Anthropic stream of `events`, then `pings` pings, one every 500 ms,
/// then nothing.
async fn pinging(events: &[&str], pings: usize) -> Server {
    let mut chunks = events.to_vec();
    chunks.extend(std::iter::repeat_n(
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        pings,
    ));
    Server::replies(vec![timed(
        "text/event-stream",
        &chunks,
        Duration::from_millis(500),
        End::Stall,
    )])
    .await
}

#[tokio::test(start_paused = true)]
async fn keep_alives_do_not_reset_the_wait_for_the_next_content() {
    let server = pinging(&[MESSAGE_START, TEXT_DELTA], 20).await;
    let mut config = HttpClientConfig::new(server.url());
    config.stream_idle_timeout = Duration::from_secs(2);
    config.stream.dialect = Some(StreamDialect::new(AnthropicMessages));
    let client = HttpClient::new(config).unwrap();
    let started = tokio::time::Instant::now();
    let mut stream = client.stream_post("/messages", &json!({})).await.unwrap();
    let error = loop {
        match stream.next_event().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a stalled stream ended"),
            Err(e) => break e,
        }
    };
    assert!(error.is_timeout(), "{error:?}");
    assert!(error.to_string().contains("no content for 2s"), "{error}");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "the pings reset the wait: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_token_limit_counts_from_the_request_whatever_comes_before() {
    let server = pinging(&[MESSAGE_START], 30).await;
    let mut config = HttpClientConfig::new(server.url());
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(10);
    config.stream.dialect = Some(StreamDialect::new(AnthropicMessages));
    config.stream.first_token_timeout = Some(Duration::from_secs(3));
    let client = HttpClient::new(config).unwrap();
    let started = tokio::time::Instant::now();
    let error = client
        .stream_post("/messages", &json!({}))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(error.to_string().contains("first_token_timeout"), "{error}");
    assert_eq!(server.hits(), 2, "retried once");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
}

#[cfg(feature = "serde")]
#[test]
fn a_settings_file_names_the_dialect_and_the_first_token_limit() {
    let config: HttpClientConfig = toml::from_str(
        r#"
        base_url = "https://api.anthropic.com/v1"
        [stream]
        dialect = "anthropic"
        first_token_timeout = 20.0
        "#,
    )
    .unwrap();
    assert_eq!(config.stream.dialect, StreamDialect::named("anthropic"));
    assert_eq!(
        config.stream.first_token_timeout,
        Some(Duration::from_secs(20))
    );
    let unknown = toml::from_str::<HttpClientConfig>(
        "base_url = \"http://x\"\n[stream]\ndialect = \"gemini\"\n",
    )
    .unwrap_err();
    assert!(unknown.to_string().contains("gemini"), "{unknown}");
}

#[tokio::test(start_paused = true)]
async fn first_token_in_a_stack_of_ones_own_retries_an_in_band_error() {
    use http_body_util::{BodyExt, Full};
    use stache_resilience::classify::HttpClassifier;
    use stache_resilience::read_ahead::{FirstToken, InBand, ReadAheadLayer};
    use stache_resilience::retry::{RetryConfig, RetryLayer};
    use tower::{Service, ServiceBuilder, ServiceExt};

    let sent = Arc::new(AtomicU32::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (sent.clone(), statuses.clone());
    let overloaded = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\"}}\n\n\
                      event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let whole = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\n\n\
                 event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let retry = RetryConfig {
        base_delay: Duration::from_millis(10),
        ..RetryConfig::default()
    };
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(retry).classifier(HttpClassifier))
        .map_response(move |res: http::Response<_>| {
            let in_band = res.extensions().get::<InBand>().map(|b| b.0.as_u16());
            seen.lock().unwrap().push((res.status().as_u16(), in_band));
            res
        })
        .layer(
            ReadAheadLayer::new(Duration::from_secs(10))
                .until(FirstToken::new(StreamDialect::new(AnthropicMessages))),
        )
        .service_fn(move |_req: http::Request<String>| {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            let body = if first { overloaded } else { whole };
            async move {
                let mut res = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                res.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                Ok::<_, std::io::Error>(res)
            }
        });
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, whole.as_bytes());
    assert_eq!(sent.load(Ordering::SeqCst), 2);
    assert_eq!(*statuses.lock().unwrap(), [(529, Some(200)), (200, None)]);
}
