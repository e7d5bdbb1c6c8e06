//! A scripted OpenAI- and Anthropic-compatible streaming server: each call
//! is answered with a whole streamed completion, or with one of the ways
//! providers fail ([`Fault`]), as the script says.
//!
//! An answer is `tokens` content events (`"t0 "`, `"t1 "`, …) after a
//! role-only first chunk (OpenAI) or `message_start` and an empty text block
//! (Anthropic), then the end: `finish_reason`, a usage chunk and `[DONE]`, or
//! `message_delta` and `message_stop`. [`LlmServer::text`] is what a whole
//! answer says.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::server::{End, Reply, Seen, Server};

/// The API a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions (`POST /chat/completions`).
    OpenAiChat,
    /// Anthropic Messages (`POST /messages`).
    Anthropic,
}

/// How one call is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The whole answer.
    None,
    /// `429` with a rate-limit error, and `Retry-After` when given (seconds).
    RateLimited { retry_after: Option<u64> },
    /// A status with the API's server error body.
    Status(u16),
    /// The connection closes before the head.
    ResetBeforeHeaders,
    /// The head never comes.
    Silent,
    /// The head and the metadata events at once, then keep-alive comments
    /// every second, and the first token only after `Duration`.
    SlowFirstToken(Duration),
    /// The connection breaks after this many tokens.
    CutAfter(usize),
    /// The stream stalls after this many tokens.
    StallAfter(usize),
    /// After this many tokens, an event whose JSON is cut short, then the rest.
    MalformedAfter(usize),
    /// Every token, then a clean end without the end events.
    NoEndMarker,
    /// `400` context length exceeded.
    ContextLength,
    /// `400` content filtered.
    ContentFilter,
    /// An error event inside the `200` stream before any content
    /// (Anthropic's `overloaded_error`; OpenAI's `{"error": …}` chunk).
    InBandOverloaded,
    /// `400` if the last message is the assistant's (a prefill), else the
    /// whole answer.
    RejectPrefill,
}

/// The scripted server; stops when dropped.
pub struct LlmServer {
    pub server: Server,
    pub api: Api,
    pub model: &'static str,
    pub tokens: usize,
}

/// The gap between two tokens.
pub const TOKEN_GAP: Duration = Duration::from_millis(10);

impl LlmServer {
    /// A server of `api` whose answers are `tokens` tokens from `model`, the
    /// `n`th call (from 0) answered as `script(n)` says.
    pub async fn start(
        api: Api,
        model: &'static str,
        tokens: usize,
        script: impl Fn(usize) -> Fault + Send + Sync + 'static,
    ) -> LlmServer {
        let script = Arc::new(script);
        let server =
            Server::start(move |n, seen| answer(api, model, tokens, &script(n), seen)).await;
        LlmServer {
            server,
            api,
            model,
            tokens,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What a whole answer says.
    pub fn text(&self) -> String {
        text(self.tokens)
    }

    /// The calls it got.
    pub fn hits(&self) -> usize {
        self.server.hits()
    }
}

/// `n` tokens, as a whole answer says them.
pub fn text(n: usize) -> String {
    (0..n).map(|i| format!("t{i} ")).collect()
}

/// The usage a whole answer reports: 7 tokens in, one per token out.
pub const INPUT_TOKENS: u64 = 7;

fn answer(api: Api, model: &str, tokens: usize, fault: &Fault, seen: &Seen) -> Reply {
    let error = |status: u16, kind: &str, code: &str, message: &str| -> Reply {
        let body = match api {
            Api::OpenAiChat => format!(
                r#"{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":"{code}"}}}}"#
            ),
            Api::Anthropic => {
                format!(r#"{{"type":"error","error":{{"type":"{code}","message":"{message}"}}}}"#)
            }
        };
        Reply::json(status, &body)
    };
    let events = Events { api, model };
    let (head, content, tail) = events.answer(tokens);
    let gaps = |chunks: Vec<Bytes>| -> Vec<(Duration, Bytes)> {
        chunks.into_iter().map(|c| (TOKEN_GAP, c)).collect()
    };
    let stream = |chunks: Vec<(Duration, Bytes)>, end: End| Reply::Timed {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        chunks,
        end,
    };
    let whole = || {
        let mut chunks = vec![(Duration::ZERO, head.clone())];
        chunks.extend(gaps(content.clone()));
        chunks.push((TOKEN_GAP, tail.clone()));
        stream(chunks, End::Finish)
    };
    match fault {
        Fault::None => whole(),
        Fault::RateLimited { retry_after } => {
            let Reply::Full {
                status,
                mut headers,
                body,
            } = error(
                429,
                "requests",
                if api == Api::Anthropic {
                    "rate_limit_error"
                } else {
                    "rate_limit_exceeded"
                },
                "Rate limit reached",
            )
            else {
                unreachable!()
            };
            if let Some(secs) = retry_after {
                headers.push(("retry-after", secs.to_string()));
            }
            Reply::Full {
                status,
                headers,
                body,
            }
        }
        Fault::Status(code) => error(
            *code,
            "server_error",
            "api_error",
            "The server had an error",
        ),
        Fault::ResetBeforeHeaders => Reply::Drop,
        Fault::Silent => Reply::Hang,
        Fault::SlowFirstToken(after) => {
            let mut chunks = vec![(Duration::ZERO, head.clone())];
            let mut waited = Duration::ZERO;
            while waited + Duration::from_secs(1) < *after {
                chunks.push((
                    Duration::from_secs(1),
                    Bytes::from_static(b": keep-alive\n\n"),
                ));
                waited += Duration::from_secs(1);
            }
            let mut content = gaps(content.clone());
            if let Some(first) = content.first_mut() {
                first.0 = after.saturating_sub(waited);
            }
            chunks.extend(content);
            chunks.push((TOKEN_GAP, tail.clone()));
            stream(chunks, End::Finish)
        }
        Fault::CutAfter(n) | Fault::StallAfter(n) => {
            let mut chunks = vec![(Duration::ZERO, head.clone())];
            chunks.extend(gaps(content[..(*n).min(tokens)].to_vec()));
            let end = if matches!(fault, Fault::CutAfter(_)) {
                End::Break
            } else {
                End::Stall
            };
            stream(chunks, end)
        }
        Fault::MalformedAfter(n) => {
            let mut chunks = vec![(Duration::ZERO, head.clone())];
            let n = (*n).min(tokens);
            chunks.extend(gaps(content[..n].to_vec()));
            chunks.push((TOKEN_GAP, events.malformed()));
            chunks.extend(gaps(content[n..].to_vec()));
            chunks.push((TOKEN_GAP, tail.clone()));
            stream(chunks, End::Finish)
        }
        Fault::NoEndMarker => {
            let mut chunks = vec![(Duration::ZERO, head.clone())];
            chunks.extend(gaps(content.clone()));
            stream(chunks, End::Finish)
        }
        Fault::ContextLength => error(
            400,
            "invalid_request_error",
            if api == Api::Anthropic {
                "invalid_request_error"
            } else {
                "context_length_exceeded"
            },
            "prompt is too long: 210000 tokens > 200000 maximum context length",
        ),
        Fault::ContentFilter => error(
            400,
            "invalid_request_error",
            if api == Api::Anthropic {
                "invalid_request_error"
            } else {
                "content_filter"
            },
            "The response was filtered due to the prompt triggering the content management policy",
        ),
        Fault::InBandOverloaded => {
            let chunks = vec![
                (Duration::ZERO, head.clone()),
                (TOKEN_GAP, events.overloaded()),
            ];
            stream(chunks, End::Finish)
        }
        Fault::RejectPrefill => {
            let body = String::from_utf8_lossy(&seen.body);
            let last_role = body.rsplit(r#""role":""#).next().unwrap_or_default();
            if last_role.starts_with("assistant") {
                error(
                    400,
                    "invalid_request_error",
                    "invalid_request_error",
                    "This model does not support assistant message prefill.",
                )
            } else {
                whole()
            }
        }
    }
}

/// The events of one API.
struct Events<'a> {
    api: Api,
    model: &'a str,
}

impl Events<'_> {
    /// The start, each token, the end.
    fn answer(&self, tokens: usize) -> (Bytes, Vec<Bytes>, Bytes) {
        let model = self.model;
        match self.api {
            Api::OpenAiChat => {
                let chunk = |delta: &str, finish: &str| {
                    format!(
                        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
                    )
                };
                let head = chunk(r#"{"role":"assistant","content":""}"#, "null");
                let content = (0..tokens)
                    .map(|i| Bytes::from(chunk(&format!(r#"{{"content":"t{i} "}}"#), "null")))
                    .collect();
                let tail = format!(
                    "{}data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"{model}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{INPUT_TOKENS},\"completion_tokens\":{tokens},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
                    chunk("{}", "\"stop\""),
                    INPUT_TOKENS + tokens as u64
                );
                (Bytes::from(head), content, Bytes::from(tail))
            }
            Api::Anthropic => {
                let head = format!(
                    "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"{model}\",\"stop_reason\":null,\"usage\":{{\"input_tokens\":{INPUT_TOKENS},\"output_tokens\":1}}}}}}\n\n\
                     event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
                     event: ping\ndata: {{\"type\": \"ping\"}}\n\n"
                );
                let content = (0..tokens)
                    .map(|i| {
                        Bytes::from(format!(
                            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"t{i} \"}}}}\n\n"
                        ))
                    })
                    .collect();
                let tail = format!(
                    "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
                     event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{tokens}}}}}\n\n\
                     event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
                );
                (Bytes::from(head), content, Bytes::from(tail))
            }
        }
    }

    fn malformed(&self) -> Bytes {
        match self.api {
            Api::OpenAiChat => Bytes::from_static(b"data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"t\n\n"),
            Api::Anthropic => Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"te\n\n",
            ),
        }
    }

    fn overloaded(&self) -> Bytes {
        match self.api {
            Api::OpenAiChat => Bytes::from_static(
                b"data: {\"error\":{\"message\":\"The engine is currently overloaded\",\"type\":\"server_error\",\"code\":\"server_overloaded\"}}\n\n",
            ),
            Api::Anthropic => Bytes::from_static(
                b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            ),
        }
    }
}

/// The text of one event's content, as the API says it; empty for others.
pub fn content_of(api: Api, data: &str) -> String {
    let key = match api {
        Api::OpenAiChat => "\"content\":\"",
        Api::Anthropic => "\"text\":\"",
    };
    data.split(key)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}
