//! Stream dialects: how an LLM API's streamed answer says what it is.
//!
//! A streamed completion is a run of events (Server-Sent Events, or NDJSON
//! lines for Ollama's own API). Only some carry generated content; others are
//! keep-alives, a role-only first chunk, `response.created`; some are errors
//! sent inside a `200` answer; and one marks the complete end. Without
//! knowing which is which, a reader takes a keep-alive for the first token
//! and a stream cut before its end for a whole answer. A [`Dialect`] tells
//! them apart, and says where the answering model and the token usage are:
//!
//! | dialect | content | in-band errors | complete end | model, usage |
//! | --- | --- | --- | --- | --- |
//! | [`OpenAiChat`] (Chat Completions, and compatible servers: vLLM, LiteLLM, Ollama's `/v1`, Mistral, Gemini's OpenAI API) | a delta with text, reasoning, a refusal or a tool call | `{"error": …}` | `[DONE]`, a `finish_reason` | first chunk's `model`; the `usage` chunk (`stream_options.include_usage`) |
//! | [`OpenAiResponses`] | `response.*.delta` with a delta | `error`, `response.failed` | `response.completed`, `response.incomplete` | `response.model`, `response.usage` |
//! | [`OpenAi`] | either of the two, told apart by the events' names | | | |
//! | [`AnthropicMessages`] | `content_block_delta` with text, thinking or tool input; a `tool_use` block | `event: error` (`overloaded_error`, …) | `message_stop`, a `stop_reason` | `message_start`; `message_delta`'s usage |
//! | [`Ollama`] (NDJSON of `/api/chat`, `/api/generate`; its `/v1` speaks [`OpenAiChat`]) | `message.content`, `response`, `thinking` or tool calls | `{"error": "…"}` | `"done": true` | `model`; `prompt_eval_count`, `eval_count` |
//!
//! The presets pick theirs ([`HttpClientConfig::openai`](crate::HttpClientConfig::openai)
//! [`OpenAi`], `anthropic` [`AnthropicMessages`], `ollama` [`Ollama`]); a
//! client's `stream.dialect`, or a call's
//! [`StreamRequestBuilder::dialect`](crate::client::StreamRequestBuilder::dialect),
//! sets one. With a dialect:
//!
//! * a stream is handed to the caller at its first content, not its first
//!   line, and `first_token_timeout` bounds the wait for it;
//! * an in-band error before any content fails the attempt as the status it
//!   stands for (retried, or the group moves on); after content it ends the
//!   stream with a typed error;
//! * a stream that ends without its end marker is an error, never a clean end;
//! * the stream reports the answering [`model`](StreamReport::model) and
//!   [`usage`](StreamReport::usage).
//!
//! The dialects read each event with a few byte searches, and parse JSON only
//! for the rare events that carry the model, the usage or an error, so that
//! reading a stream through one costs little more than reading its lines.
//!
//! # A dialect of one's own
//!
//! ```
//! use stache_resilience::client::Event;
//! use stache_resilience::provider::dialect::{Dialect, StreamReport};
//! use stache_resilience::provider::{ProviderError, ProviderErrorKind};
//!
//! /// Lines of `{"token": "…"}`, then `{"end": true}`.
//! #[derive(Debug)]
//! struct Tokens;
//!
//! impl Dialect for Tokens {
//!     fn name(&self) -> &str {
//!         "tokens"
//!     }
//!
//!     fn read(&self, event: &Event, report: &mut StreamReport) {
//!         let data = event.data();
//!         if data.contains(r#""end":true"#) {
//!             report.end();
//!         } else if data.contains(r#""token""#) {
//!             report.content();
//!         } else if data.contains(r#""error""#) {
//!             report.error(ProviderError::new(ProviderErrorKind::ServerError, None, Some(data)));
//!         }
//!     }
//! }
//! ```

mod anthropic;
mod ollama;
mod openai;
mod report;
mod scan;
#[cfg(test)]
mod tests;

pub use self::anthropic::AnthropicMessages;
pub use self::ollama::Ollama;
pub use self::openai::{OpenAi, OpenAiChat, OpenAiResponses};
pub use self::report::{Dialect, StreamDialect, StreamReport};

impl StreamDialect {
    /// The dialect called `name`, of those this crate knows (see above).
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "openai" => StreamDialect::new(OpenAi),
            "openai-chat" => StreamDialect::new(OpenAiChat),
            "openai-responses" => StreamDialect::new(OpenAiResponses),
            "anthropic" => StreamDialect::new(AnthropicMessages),
            "ollama" => StreamDialect::new(Ollama),
            _ => return None,
        })
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for StreamDialect {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        StreamDialect::named(&name).ok_or_else(|| {
            serde::de::Error::unknown_variant(
                &name,
                &[
                    "openai",
                    "openai-chat",
                    "openai-responses",
                    "anthropic",
                    "ollama",
                ],
            )
        })
    }
}
