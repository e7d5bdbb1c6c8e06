//! NDJSON streaming of a generate call, printing tokens as they arrive.
//!
//! The call returns once the headers arrive (retries cover only that part); each
//! wait for the next chunk is bounded by `stream_idle_timeout`, so a stalled
//! model cannot hang the caller.
//!
//! `cargo run --example streaming` starts a loopback server that streams
//! Ollama-style `/api/generate` lines; `OLLAMA_URL=http://localhost:11434 cargo
//! run --example streaming` streams from a real Ollama (`OLLAMA_MODEL`, default
//! `llama3.2`).

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use stache_resilience::{HttpClient, HttpClientConfig};

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    response: String,
    #[serde(default)]
    done: bool,
}

/// Streams a completion of `prompt`, calling `on_token` for each token; returns
/// the whole text.
pub async fn generate(
    client: &HttpClient,
    model: &str,
    prompt: &str,
    mut on_token: impl FnMut(&str),
) -> Result<String, Box<dyn std::error::Error>> {
    let body = json!({ "model": model, "prompt": prompt, "stream": true });
    let mut stream = client.stream_post("/api/generate", &body).await?;
    let mut text = String::new();
    while let Some(line) = stream.next_line().await? {
        let chunk: Chunk = serde_json::from_str(&line)?;
        on_token(&chunk.response);
        text.push_str(&chunk.response);
        if chunk.done {
            break;
        }
    }
    Ok(text)
}

/// A body that sends one NDJSON line every few milliseconds.
struct Tokens {
    words: std::vec::IntoIter<&'static str>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Tokens {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(5))));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        Poll::Ready(self.words.next().map(|word| {
            let done = self.words.len() == 0;
            let line = json!({ "response": word, "done": done }).to_string() + "\n";
            Ok(Frame::data(Bytes::from(line)))
        }))
    }
}

/// A loopback stand-in for `/api/generate` that streams a fixed sentence.
pub async fn fake_generate() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |_req: hyper::Request<hyper::body::Incoming>| async {
                        let words = vec!["Resilience ", "is ", "a ", "feature", "."];
                        let mut res = hyper::Response::new(Tokens {
                            words: words.into_iter(),
                            sleep: None,
                        });
                        res.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/x-ndjson"),
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
    let url = match std::env::var("OLLAMA_URL") {
        Ok(url) => url,
        Err(_) => fake_generate().await?,
    };
    let model = std::env::var("OLLAMA_MODEL").unwrap_or_else(|_| "llama3.2".to_owned());
    let mut config = HttpClientConfig::ollama(url);
    config.stream_idle_timeout = Duration::from_secs(30);
    let client = HttpClient::new(config)?;
    let text = generate(
        &client,
        &model,
        "Why do clients need circuit breakers?",
        |token| {
            print!("{token}");
            let _ = std::io::stdout().flush();
        },
    )
    .await?;
    println!("\n({} characters)", text.len());
    Ok(())
}
