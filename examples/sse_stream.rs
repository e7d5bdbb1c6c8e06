//! A chat completion streamed as Server-Sent Events, the way OpenAI,
//! Anthropic, Mistral and most LLM APIs stream: `data: {...}` events, comments
//! as keep-alives, and `data: [DONE]` at the end.
//!
//! `cargo run --example sse_stream` starts a loopback server that streams an
//! OpenAI-style completion one byte at a time (so every event arrives cut at
//! every possible place); with `OPENAI_API_KEY` set, it streams from OpenAI
//! instead (`OPENAI_MODEL`, default `gpt-4o-mini`).

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use stache_resilience::{HttpClient, HttpClientConfig};

#[derive(Deserialize)]
struct Chunk {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Delta,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

/// Streams a completion of `prompt`, calling `on_token` for each piece of
/// text; returns the whole text and the number of events read.
pub async fn complete(
    client: &HttpClient,
    model: &str,
    prompt: &str,
    mut on_token: impl FnMut(&str),
) -> Result<(String, usize), Box<dyn std::error::Error>> {
    let body = json!({
        "model": model,
        "stream": true,
        "messages": [{ "role": "user", "content": prompt }],
    });
    let mut stream = client
        .post("/v1/chat/completions", &body)
        .header("accept", "text/event-stream")
        .stream()
        .await?;
    let (mut text, mut events) = (String::new(), 0);
    while let Some(event) = stream.next_event().await? {
        events += 1;
        if event.data() == "[DONE]" {
            break;
        }
        let chunk: Chunk = serde_json::from_str(event.data())?;
        for choice in chunk.choices {
            if let Some(piece) = choice.delta.content {
                on_token(&piece);
                text.push_str(&piece);
            }
        }
    }
    Ok((text, events))
}

/// The body of a streamed completion, as OpenAI sends it.
pub fn completion_events(words: &[&str]) -> String {
    let mut body = String::from(": the stream starts\n\n");
    for word in words {
        let chunk = json!({
            "object": "chat.completion.chunk",
            "choices": [{ "index": 0, "delta": { "content": word } }],
        });
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    body.push_str(": keep-alive\n\ndata: [DONE]\n\n");
    body
}

/// A body that sends `bytes` one byte per frame, yielding between them (so
/// that hyper writes each byte out on its own).
struct ByteByByte {
    bytes: Bytes,
    yielded: bool,
}

impl http_body::Body for ByteByByte {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.bytes.is_empty() {
            return Poll::Ready(None);
        }
        if !std::mem::replace(&mut self.yielded, true) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        let byte = self.bytes.split_to(1);
        Poll::Ready(Some(Ok(Frame::data(byte))))
    }
}

/// A loopback stand-in for `/v1/chat/completions` that streams `words` as
/// Server-Sent Events, one byte at a time.
pub async fn fake_completions(words: &'static [&'static str]) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut res = hyper::Response::new(ByteByByte {
                            bytes: Bytes::from(completion_events(words)),
                            yielded: false,
                        });
                        res.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("text/event-stream"),
                        );
                        Ok::<_, Infallible>(res)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(url)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (config, model) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let mut config = HttpClientConfig::new("https://api.openai.com");
            let mut value = http::HeaderValue::try_from(format!("Bearer {key}"))?;
            value.set_sensitive(true);
            config.headers.insert(http::header::AUTHORIZATION, value);
            let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
            (config, model)
        }
        Err(_) => {
            const WORDS: &[&str] = &["Streams ", "arrive ", "in ", "pieces", "."];
            (
                HttpClientConfig::new(fake_completions(WORDS).await?),
                "fake".to_owned(),
            )
        }
    };
    let client = HttpClient::new(config)?;
    let (text, events) = complete(&client, &model, "Say something short.", |token| {
        print!("{token}");
        let _ = std::io::stdout().flush();
    })
    .await?;
    println!("\n({events} events, {} characters)", text.len());
    Ok(())
}
