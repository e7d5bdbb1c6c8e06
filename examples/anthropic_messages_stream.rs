//! A streamed Anthropic message through a provider that is overloaded: the
//! `anthropic` preset reads the stream in its dialect, so an `overloaded_error`
//! sent *inside* the `200` stream, before any text, counts as the 529 it stands
//! for: a `ProviderGroup` moves the call to the next provider at once, and the
//! caller reads one whole answer, with the model that wrote it and its usage.
//!
//! `cargo run --example anthropic_messages_stream` runs against two embedded
//! Anthropic-compatible servers, the first overloaded;
//! `ANTHROPIC_API_KEY=... cargo run --example anthropic_messages_stream`
//! streams from the real API instead.

use serde_json::json;
use stache_resilience::failover::ProviderGroup;
use stache_resilience::{Error, HttpClient, HttpClientConfig};
use test_support::llm::{Api, Fault, LlmServer};

/// What one streamed answer came to.
#[derive(Debug)]
pub struct Answer {
    pub text: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub usage: Option<(u64, u64)>,
}

/// Streams one message from `group`, printing its text as it comes.
pub async fn message(group: &ProviderGroup, model: &str, print: bool) -> Result<Answer, Error> {
    let body = json!({
        "model": model,
        "max_tokens": 256,
        "stream": true,
        "messages": [{ "role": "user", "content": "Say hello in five words." }],
    });
    let mut stream = group
        .stream_post("/messages", &body)
        .restart_on_cut()
        .await?;
    let mut text = String::new();
    loop {
        match stream.next_event().await {
            Ok(Some(event)) if event.event() == "content_block_delta" => {
                let delta: serde_json::Value =
                    serde_json::from_str(event.data()).unwrap_or_default();
                if let Some(piece) = delta["delta"]["text"].as_str() {
                    if print {
                        print!("{piece}");
                    }
                    text.push_str(piece);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) if e.is_stream_restarted() => text.clear(),
            Err(e) => return Err(e),
        }
    }
    if print {
        println!();
    }
    Ok(Answer {
        text,
        provider: stream.provider().map(str::to_owned),
        model: stream.model().map(str::to_owned),
        usage: stream.usage().map(|u| (u.input_tokens, u.output_tokens)),
    })
}

/// The demo: a primary whose streams carry `overloaded_error`, and a
/// fallback that answers.
pub async fn demo(print: bool) -> Result<(Answer, usize), Box<dyn std::error::Error>> {
    let primary = LlmServer::start(Api::Anthropic, "claude-sonnet-4-5", 8, |_| {
        Fault::InBandOverloaded
    })
    .await;
    let fallback = LlmServer::start(Api::Anthropic, "claude-haiku-4-5", 8, |_| Fault::None).await;
    let client = |name: &str, url: String| {
        let mut config = HttpClientConfig::anthropic("sk-ant-demo-not-a-real-key");
        config.base_url = url;
        HttpClient::for_provider(name, config)
    };
    let group = ProviderGroup::new(vec![client("primary", primary.url())?])
        .then(client("fallback", fallback.url())?);
    let answer = message(&group, "claude-sonnet-4-5", print).await?;
    Ok((answer, primary.hits()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let answer = match std::env::var("ANTHROPIC_API_KEY") {
        Ok(key) => {
            let mut config = HttpClientConfig::anthropic(&key);
            config.base_url = "https://api.anthropic.com/v1".to_owned();
            let anthropic = HttpClient::for_provider("anthropic", config)?;
            message(
                &ProviderGroup::new(vec![anthropic]),
                "claude-haiku-4-5",
                true,
            )
            .await?
        }
        Err(_) => demo(true).await?.0,
    };
    println!(
        "answered by {} ({}), usage {:?}",
        answer.provider.as_deref().unwrap_or("?"),
        answer.model.as_deref().unwrap_or("?"),
        answer.usage
    );
    Ok(())
}
