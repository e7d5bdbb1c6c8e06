//! What a call says about the provider it goes to, beyond HTTP: the
//! [`Model`] it asks for, what the provider's error says, by name
//! ([`ProviderError`]), the tokens an answer used ([`Usage`]), and how its
//! streams speak (the [`dialect`]s: content, in-band errors, the end marker,
//! the answering model and usage).
//!
//! Providers keep their rate limits per model: OpenAI's and Anthropic's
//! `429`s, `Retry-After`s and `x-ratelimit-*` headers speak of the model
//! that was called, not of the whole API. A [`Model`] in a request's
//! extensions lets the layers keep what they learn per model: a
//! [`RateLimiter`](crate::rate_limit::RateLimiter) made
//! [`per_model`](crate::rate_limit::RateLimiter::per_model) closes its gate
//! and learns its pace for that model alone.
//!
//! [`HttpClient`](crate::HttpClient) sets it from
//! [`RequestBuilder::model`](crate::client::RequestBuilder::model), or, with
//! [`rate_limit_per_model`](crate::HttpClientConfig::rate_limit_per_model)
//! (on in the `openai` and `anthropic` presets), from the `model` field of
//! the call's JSON body.
//!
//! ```
//! use stache_resilience::provider::Model;
//!
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(Model::new("gpt-4o-mini"));
//! assert_eq!(request.extensions().get::<Model>().map(Model::as_str), Some("gpt-4o-mini"));
//! ```

use std::fmt;
use std::sync::Arc;

pub mod dialect;
mod error;
mod usage;

pub use self::error::{ProviderError, ProviderErrorKind};
pub use self::usage::Usage;
pub(crate) use self::usage::answering_model;

/// The model a call asks for, as the provider names it (`gpt-4o-mini`,
/// `claude-sonnet-4-5`): a request extension the layers key their
/// per-model state by. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Model(Arc<str>);

impl Model {
    /// The model called `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Model(name.into())
    }

    /// The model's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `model` field of a JSON body, if it has one that is a string: the
    /// model an OpenAI-, Anthropic- or Ollama-style request asks for. Reads
    /// the body without building it; a body that is not a JSON object, or
    /// has no such field, gives `None`.
    pub fn from_json(body: &[u8]) -> Option<Model> {
        #[derive(serde::Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            model: Option<std::borrow::Cow<'a, str>>,
        }
        let named: Named<'_> = serde_json::from_slice(body).ok()?;
        named.model.map(|name| Model::new(name.as_ref()))
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Model;

    #[test]
    fn the_model_is_read_from_a_json_body() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\""}],"model":"gpt-4o"}"#;
        assert_eq!(Model::from_json(body), Some(Model::new("gpt-4o")));
        let escaped = br#"{"model":"a\/b"}"#;
        assert_eq!(
            Model::from_json(escaped).as_ref().map(Model::as_str),
            Some("a/b")
        );
        for body in [
            &br#"{"input":"no model"}"#[..],
            br#"{"model":42}"#,
            br#"[1,2]"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                Model::from_json(body),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
