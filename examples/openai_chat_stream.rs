//! A streamed OpenAI chat completion that survives a provider cutting it off:
//! the `openai` preset reads the stream in its dialect (the first *token*,
//! not the first line, ends the wait; a stream that ends before `[DONE]` is an
//! error), and a `ProviderGroup` called with `restart_on_cut` starts a broken
//! answer again, whole, on the next provider.
//!
//! `cargo run --example openai_chat_stream` runs against two embedded
//! OpenAI-compatible servers, the first of which breaks its stream after five
//! tokens; `OPENAI_API_KEY=... cargo run --example openai_chat_stream` streams
//! from the real API instead.

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
    pub tokens: Option<u64>,
    pub restarts: u32,
}

/// Streams one answer from `group`, printing it as it comes, and starting
/// over when the stream says it restarted on another provider.
pub async fn chat(group: &ProviderGroup, model: &str, print: bool) -> Result<Answer, Error> {
    let body = json!({
        "model": model,
        "stream": true,
        // Without it, OpenAI reports no usage in a stream.
        "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": "Say hello in five words." }],
    });
    let mut stream = group
        .stream_post("/chat/completions", &body)
        .restart_on_cut()
        .await?;
    let mut text = String::new();
    loop {
        match stream.next_event().await {
            Ok(Some(event)) => {
                let chunk: serde_json::Value = match serde_json::from_str(event.data()) {
                    Ok(chunk) => chunk,
                    Err(_) => continue, // `[DONE]`
                };
                if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
                    if print {
                        print!("{delta}");
                    }
                    text.push_str(delta);
                }
            }
            Ok(None) => break,
            // The answer starts over on the next provider: drop what came.
            Err(e) if e.is_stream_restarted() => {
                if print {
                    println!("\n[{e}]");
                }
                text.clear();
            }
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
        tokens: stream.usage().map(|u| u.total()),
        restarts: stream.restarts(),
    })
}

/// The demo: a primary that breaks its stream after five tokens, and a
/// fallback that answers whole.
pub async fn demo(print: bool) -> Result<Answer, Box<dyn std::error::Error>> {
    let primary =
        LlmServer::start(Api::OpenAiChat, "gpt-4o-mini", 12, |_| Fault::CutAfter(5)).await;
    let fallback = LlmServer::start(Api::OpenAiChat, "gpt-4o", 12, |_| Fault::None).await;
    let client = |name: &str, url: String| {
        let mut config = HttpClientConfig::openai("sk-demo-not-a-real-key");
        config.base_url = url;
        HttpClient::for_provider(name, config)
    };
    let group = ProviderGroup::new(vec![client("primary", primary.url())?])
        .then(client("fallback", fallback.url())?);
    Ok(chat(&group, "gpt-4o-mini", print).await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let answer = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let openai = HttpClient::for_provider("openai", HttpClientConfig::openai(&key))?;
            chat(&ProviderGroup::new(vec![openai]), "gpt-4o-mini", true).await?
        }
        Err(_) => demo(true).await?,
    };
    println!(
        "answered by {} ({}), {} tokens, {} restart(s)",
        answer.provider.as_deref().unwrap_or("?"),
        answer.model.as_deref().unwrap_or("?"),
        answer.tokens.map_or("?".to_owned(), |t| t.to_string()),
        answer.restarts
    );
    Ok(())
}
