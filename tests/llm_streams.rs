//! LLM streams through a `ProviderGroup` of two providers built as the README
//! shows (the second declaring a larger context window), against the scripted
//! OpenAI- and Anthropic-compatible server of test-support: for each way a
//! provider fails, the caller gets the whole answer from one provider (or,
//! for a content filter, the provider's reason as a typed error), never a
//! truncated text presented as success, never a hang, at most 3 attempts on
//! the failing primary, and the answering provider's model and usage.

use std::time::Duration;

use serde_json::json;
use stache_resilience::failover::ProviderGroup;
use stache_resilience::provider::ProviderErrorKind;
use stache_resilience::{Error, HttpClient, HttpClientConfig};
use test_support::llm::{Api, Fault, INPUT_TOKENS, LlmServer, content_of};

const TOKENS: usize = 12;

fn config(api: Api, url: &str) -> HttpClientConfig {
    let mut config = match api {
        Api::OpenAiChat => HttpClientConfig::openai("sk-test"),
        Api::Anthropic => HttpClientConfig::anthropic("sk-ant-test"),
    };
    config.base_url = url.to_owned();
    config.stream.first_token_timeout = Some(Duration::from_secs(5));
    config.stream_idle_timeout = Duration::from_secs(2);
    config
}

/// The group of the README: the primary, then a fallback with a larger
/// context window.
fn group(primary: &LlmServer, fallback: &LlmServer) -> ProviderGroup {
    let api = primary.api;
    ProviderGroup::new(vec![
        HttpClient::for_provider("primary", config(api, &primary.url())).unwrap(),
    ])
    .context_window(128_000)
    .then(HttpClient::for_provider("fallback", config(api, &fallback.url())).unwrap())
    .context_window(1_000_000)
    .deadline(Duration::from_secs(120))
}

fn endpoint(api: Api) -> &'static str {
    match api {
        Api::OpenAiChat => "/chat/completions",
        Api::Anthropic => "/messages",
    }
}

fn body(model: &str) -> serde_json::Value {
    json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

/// What one call ended with.
#[derive(Debug)]
struct Outcome {
    text: Result<String, Error>,
    provider: Option<String>,
    model: Option<String>,
    usage: Option<(u64, u64)>,
    restarts: u32,
}

/// One streamed call, read to its end as a user would, starting over when the
/// stream says it restarted.
async fn call(group: &ProviderGroup, api: Api) -> Outcome {
    let started = group
        .stream_post(endpoint(api), &body("model-a"))
        .restart_on_cut()
        .await;
    let mut stream = match started {
        Ok(stream) => stream,
        Err(e) => {
            return Outcome {
                text: Err(e),
                provider: None,
                model: None,
                usage: None,
                restarts: 0,
            };
        }
    };
    let mut text = String::new();
    let end = loop {
        match stream.next_event().await {
            Ok(Some(event)) => text.push_str(&content_of(api, event.data())),
            Ok(None) => break Ok(text),
            Err(e) if e.is_stream_restarted() => text.clear(),
            Err(e) => break Err(e),
        }
    };
    Outcome {
        text: end,
        provider: stream.provider().map(str::to_owned),
        model: stream.model().map(str::to_owned),
        usage: stream.usage().map(|u| (u.input_tokens, u.output_tokens)),
        restarts: stream.restarts(),
    }
}

/// Reads `stream` to its error; a clean end fails the test.
async fn first_error(stream: &mut stache_resilience::client::StreamResponse) -> Error {
    loop {
        match stream.next_event().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a broken stream ended cleanly"),
            Err(e) => return e,
        }
    }
}

/// The calls a server got for completions (health checks aside).
fn completions(server: &LlmServer) -> usize {
    let path = endpoint(server.api);
    server
        .server
        .seen()
        .iter()
        .filter(|s| s.path == path)
        .count()
}

/// Runs `fault` on the primary for every call (`once`: the first only), the
/// fallback always whole; checks the rules of the module documentation.
async fn scenario(api: Api, fault: Fault, once: bool) -> (Outcome, usize, usize) {
    let script_fault = fault.clone();
    let primary = LlmServer::start(api, "model-a", TOKENS, move |n| {
        if once && n > 0 {
            Fault::None
        } else {
            script_fault.clone()
        }
    })
    .await;
    let fallback = LlmServer::start(api, "model-b", TOKENS, |_| Fault::None).await;
    let group = group(&primary, &fallback);
    let outcome = tokio::time::timeout(Duration::from_secs(300), call(&group, api))
        .await
        .unwrap_or_else(|_| panic!("{api:?} {fault:?}: the call hung"));
    let (a, b) = (completions(&primary), completions(&fallback));
    assert!(a <= 3, "{api:?} {fault:?}: {a} attempts on the primary");
    (outcome, a, b)
}

/// The call ended with the whole answer from one provider, its model and usage.
fn assert_whole(api: Api, fault: &Fault, outcome: &Outcome) {
    let text = outcome
        .text
        .as_ref()
        .unwrap_or_else(|e| panic!("{api:?} {fault:?}: {e}"));
    assert_eq!(text, &test_support::llm::text(TOKENS), "{api:?} {fault:?}");
    let expected = match outcome.provider.as_deref() {
        Some("primary") => "model-a",
        Some("fallback") => "model-b",
        other => panic!("{api:?} {fault:?}: answered by {other:?}"),
    };
    assert_eq!(
        outcome.model.as_deref(),
        Some(expected),
        "{api:?} {fault:?}"
    );
    assert_eq!(
        outcome.usage,
        Some((INPUT_TOKENS, TOKENS as u64)),
        "{api:?} {fault:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_failure_before_content_ends_with_a_whole_answer() {
    for api in [Api::OpenAiChat, Api::Anthropic] {
        for (fault, once, by) in [
            (
                Fault::RateLimited {
                    retry_after: Some(1),
                },
                true,
                "primary",
            ),
            (Fault::RateLimited { retry_after: None }, false, "fallback"),
            (Fault::Status(500), true, "primary"),
            (Fault::Status(503), false, "fallback"),
            (Fault::ResetBeforeHeaders, false, "fallback"),
            (Fault::Silent, false, "fallback"),
            (
                Fault::SlowFirstToken(Duration::from_secs(20)),
                false,
                "fallback",
            ),
            (Fault::InBandOverloaded, false, "fallback"),
            (Fault::ContextLength, false, "fallback"),
        ] {
            let (outcome, _, _) = scenario(api, fault.clone(), once).await;
            assert_whole(api, &fault, &outcome);
            assert_eq!(outcome.provider.as_deref(), Some(by), "{api:?} {fault:?}");
            assert_eq!(outcome.restarts, 0, "{api:?} {fault:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_broken_after_content_restarts_whole_on_the_fallback() {
    for api in [Api::OpenAiChat, Api::Anthropic] {
        for fault in [
            Fault::CutAfter(5),
            Fault::StallAfter(5),
            Fault::MalformedAfter(5),
            Fault::NoEndMarker,
        ] {
            let (outcome, a, b) = scenario(api, fault.clone(), false).await;
            assert_whole(api, &fault, &outcome);
            assert_eq!(
                outcome.provider.as_deref(),
                Some("fallback"),
                "{api:?} {fault:?}"
            );
            assert_eq!((outcome.restarts, a, b), (1, 1, 1), "{api:?} {fault:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_sends_no_prefill_to_a_fallback_that_rejects_it() {
    for api in [Api::OpenAiChat, Api::Anthropic] {
        let primary = LlmServer::start(api, "model-a", TOKENS, |_| Fault::CutAfter(4)).await;
        let fallback = LlmServer::start(api, "model-b", TOKENS, |_| Fault::RejectPrefill).await;
        let outcome = call(&group(&primary, &fallback), api).await;
        assert_whole(api, &Fault::RejectPrefill, &outcome);
        assert_eq!(outcome.restarts, 1);
        let sent = fallback.server.seen();
        assert!(
            !String::from_utf8_lossy(&sent[0].body).contains("assistant"),
            "{api:?}: the restart carried a prefill"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_content_filter_is_the_callers_typed_error_and_no_one_else_is_asked() {
    for api in [Api::OpenAiChat, Api::Anthropic] {
        let (outcome, a, b) = scenario(api, Fault::ContentFilter, false).await;
        let error = outcome.text.expect_err("a filtered prompt has no answer");
        let named = error.provider_error().expect("a named error");
        assert_eq!(named.kind(), ProviderErrorKind::ContentFiltered, "{api:?}");
        assert!(
            named
                .message()
                .unwrap()
                .contains("content management policy")
        );
        assert_eq!((a, b), (1, 0), "{api:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_the_opt_in_a_cut_stream_is_an_error_that_says_how_much_came() {
    let primary =
        LlmServer::start(Api::OpenAiChat, "model-a", TOKENS, |_| Fault::CutAfter(5)).await;
    let fallback = LlmServer::start(Api::OpenAiChat, "model-b", TOKENS, |_| Fault::None).await;
    let group = group(&primary, &fallback);
    let mut stream = group
        .stream_post("/chat/completions", &body("model-a"))
        .await
        .unwrap();
    let error = first_error(&mut stream).await;
    assert!(!error.is_stream_restarted());
    assert_eq!(error.stream_cut().and_then(|c| c.content_events()), Some(5));
    assert!(
        error.to_string().contains("after 5 content events"),
        "{error}"
    );
    assert_eq!(completions(&fallback), 0);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_primary_serves_twenty_calls_whole() {
    for api in [Api::OpenAiChat, Api::Anthropic] {
        let primary = LlmServer::start(api, "model-a", TOKENS, |n| match n % 4 {
            0 => Fault::None,
            1 => Fault::Status(503),
            2 => Fault::CutAfter(3),
            _ => Fault::None,
        })
        .await;
        let fallback = LlmServer::start(api, "model-b", TOKENS, |_| Fault::None).await;
        let group = group(&primary, &fallback);
        for call_no in 0..20 {
            let before = completions(&primary);
            let outcome = call(&group, api).await;
            assert_whole(api, &Fault::None, &outcome);
            let attempts = completions(&primary) - before;
            assert!(
                attempts <= 3,
                "{api:?} call {call_no}: {attempts} attempts on the primary"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_clients_stream_restarts_on_the_same_provider_when_asked_and_only_if_safe() {
    for api in [Api::OpenAiChat, Api::Anthropic] {
        let server = LlmServer::start(api, "model-a", TOKENS, |n| {
            if n == 0 {
                Fault::CutAfter(4)
            } else {
                Fault::None
            }
        })
        .await;
        let client = HttpClient::new(config(api, &server.url())).unwrap();
        let started = client
            .post(endpoint(api), &body("model-a"))
            .stream()
            .restart_on_cut()
            .await;
        let mut stream = started.unwrap();
        let mut text = String::new();
        let mut restarted = 0;
        loop {
            match stream.next_event().await {
                Ok(Some(event)) => text.push_str(&content_of(api, event.data())),
                Ok(None) => break,
                Err(e) if e.is_stream_restarted() => {
                    restarted += 1;
                    text.clear();
                }
                Err(e) => panic!("{api:?}: {e}"),
            }
        }
        assert_eq!(text, test_support::llm::text(TOKENS), "{api:?}");
        assert_eq!((restarted, stream.restarts()), (1, 1), "{api:?}");
        assert_eq!(completions(&server), 2, "{api:?}");
        assert_eq!(stream.model(), Some("model-a"));

        // A call that is not safe to repeat is not sent again.
        let server = LlmServer::start(api, "model-a", TOKENS, |_| Fault::CutAfter(4)).await;
        let client = HttpClient::new(config(api, &server.url())).unwrap();
        let mut stream = client
            .post(endpoint(api), &body("model-a"))
            .stream()
            .idempotent(false)
            .restart_on_cut()
            .await
            .unwrap();
        let error = first_error(&mut stream).await;
        assert!(!error.is_stream_restarted(), "{api:?}: {error}");
        assert_eq!(completions(&server), 1, "{api:?}");
    }
}
