//! What a call says about the provider it goes to, beyond HTTP: the
//! [`Model`] it asks for, and whether the answer says the account's quota is
//! spent ([`QuotaSpent`]).
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

/// The mark a client puts on an answer whose provider says the account's
/// quota is spent: its credit or billing, not a rate. Retrying it, or
/// waiting a few seconds, will not help; another provider may.
///
/// [`HttpClient`](crate::HttpClient) reads the body of every buffered 4xx
/// answer and marks it (in the response's extensions) when
/// [`quota_spent`] says so; a stack of your own can mark its answers the
/// same way. A marked answer is:
///
/// * not retried, and neutral for the circuit breaker
///   ([`Outcome::Ignored`](crate::classify::Outcome::Ignored), from
///   [`HttpClassifier`](crate::classify::HttpClassifier));
/// * a cool-down for the provider: the [rate limiter](crate::rate_limit)
///   closes its gate, for every model, for its longest gate (5 minutes by
///   default, [`RateLimiter::with_max_gate`](crate::rate_limit::RateLimiter::with_max_gate)),
///   so that the next calls are refused at once, sending nothing, and a
///   [`ProviderGroup`](crate::failover::ProviderGroup) moves them on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaSpent;

/// The error codes by which providers say a quota is spent: OpenAI's
/// `insufficient_quota` (a `429`), Anthropic's `billing_error` (a `402`).
const SPENT: [&str; 2] = ["insufficient_quota", "billing_error"];

/// Whether a 4xx answer's JSON `body` says the account's quota is spent:
/// its `error.code` or `error.type` is OpenAI's `insufficient_quota` or
/// Anthropic's `billing_error`. Anything else (another code, a body that is
/// not JSON) is not.
///
/// ```
/// use stache_resilience::provider::quota_spent;
///
/// let openai = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
/// assert!(quota_spent(openai));
/// let rate = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
/// assert!(!quota_spent(rate));
/// ```
pub fn quota_spent(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        error: Option<Described<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Described<'a> {
        #[serde(borrow, rename = "type", default, deserialize_with = "text")]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "text")]
        code: Option<std::borrow::Cow<'a, str>>,
    }
    /// A string, or nothing for any other JSON value (a numeric code, null).
    fn text<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text<'a> {
            Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
            Other(serde::de::IgnoredAny),
        }
        Ok(match serde::Deserialize::deserialize(deserializer)? {
            Text::Text(text) => Some(text),
            Text::Other(_) => None,
        })
    }
    // Cheap before any parse: most 4xx bodies name neither code.
    if !SPENT
        .iter()
        .any(|code| body.windows(code.len()).any(|w| w == code.as_bytes()))
    {
        return false;
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(body) else {
        return false;
    };
    envelope.error.is_some_and(|error| {
        [error.kind, error.code]
            .into_iter()
            .flatten()
            .any(|named| SPENT.contains(&named.as_ref()))
    })
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
    use super::{Model, quota_spent};

    #[test]
    fn a_spent_quota_is_told_from_a_rate_limit_by_its_code() {
        let spent: [&[u8]; 3] = [
            br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            br#"{"error":{"type":"requests","code":"insufficient_quota"}}"#,
            br#"{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low"}}"#,
        ];
        for body in spent {
            assert!(quota_spent(body), "{}", String::from_utf8_lossy(body));
        }
        let not: [&[u8]; 6] = [
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"insufficient_quota"}}"#,
            br#"{"error":{"type":"insufficient_quota_soon","code":429}}"#,
            br#"{"error":"insufficient_quota"}"#,
            b"insufficient_quota",
            b"",
        ];
        for body in not {
            assert!(!quota_spent(body), "{}", String::from_utf8_lossy(body));
        }
    }

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
