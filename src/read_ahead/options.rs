//! [`StreamOptions`]: how a client reads its streams, as one setting.

use std::time::Duration;

use crate::provider::dialect::StreamDialect;

/// How an [`HttpClient`](crate::HttpClient) reads its streamed answers,
/// beyond the original design's `stream_idle_timeout` and size limits: the
/// client's `stream` setting.
///
/// | field | default (`new`, `ollama`, `mixedbread`) | `openai` | `anthropic` | `ollama` |
/// | --- | --- | --- | --- | --- |
/// | `dialect` | none: a stream is handed on at its first line | [`OpenAi`](crate::provider::dialect::OpenAi) | [`AnthropicMessages`](crate::provider::dialect::AnthropicMessages) | [`Ollama`](crate::provider::dialect::Ollama) |
/// | `first_token_timeout` | none | 30 s | 30 s | none (a local model may load for minutes) |
///
/// With a dialect, `stream_idle_timeout` bounds the gap between content
/// events (keep-alives do not reset it), an in-band error or a missing end
/// marker is an error, and the stream reports its model and usage; see
/// [`dialect`](crate::provider::dialect).
///
/// In a settings file:
///
/// ```toml
/// [providers.openai.stream]
/// dialect = "openai"          # "openai-chat", "openai-responses", "anthropic", "ollama"
/// first_token_timeout = 20.0  # seconds; none by default
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct StreamOptions {
    /// The streaming protocol the provider speaks (none by default); a
    /// call's [`dialect`](crate::client::StreamRequestBuilder::dialect)
    /// overrides it.
    pub dialect: Option<StreamDialect>,
    /// The longest wait for a stream's first content, from each attempt's
    /// request being sent (the wait for the head included): past it the
    /// attempt fails as a timeout, and the call moves on (the next attempt,
    /// or a group's next provider). Without a dialect, the first line is
    /// the first content. None by default.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_secs::option"))]
    pub first_token_timeout: Option<Duration>,
}

impl StreamOptions {
    /// Options that read streams by `dialect`, with no first-token limit.
    pub fn dialect(dialect: StreamDialect) -> Self {
        StreamOptions {
            dialect: Some(dialect),
            first_token_timeout: None,
        }
    }

    /// These options with a first-token limit.
    pub fn first_token_timeout(mut self, limit: Duration) -> Self {
        self.first_token_timeout = Some(limit);
        self
    }
}
