//! [`ProviderError`]: what a provider's error body says, by name.
//!
//! Each API words its errors its own way; the layers need to know only what
//! an error stands for. The bodies read here:
//!
//! | API | shape |
//! | --- | --- |
//! | OpenAI, Azure OpenAI, vLLM, LiteLLM proxies | `{"error": {"message", "type", "param", "code"}}` (Azure adds `innererror`) |
//! | Anthropic | `{"type": "error", "error": {"type", "message"}}` |
//! | Gemini (its OpenAI-compatible API too) | `{"error": {"code": 429, "message", "status": "RESOURCE_EXHAUSTED"}}`, or the same in a one-element array |
//! | Mistral | `{"object": "error", "message", "type", "code"}` |
//! | Ollama | `{"error": "model \"x\" not found, try pulling it first"}` |

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use serde_json::Value;

/// What a provider's error stands for, whatever its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// Too many requests or tokens for now: a rate, which passes.
    RateLimited,
    /// The account's quota, credit or billing is spent: waiting a few seconds
    /// will not help (OpenAI's `insufficient_quota`, Anthropic's
    /// `billing_error`).
    QuotaExhausted,
    /// The provider (or the model) is overloaded: Anthropic's
    /// `overloaded_error` (529), Gemini's `UNAVAILABLE`.
    Overloaded,
    /// The prompt and the requested output do not fit the model's context
    /// window.
    ContextLengthExceeded,
    /// The provider's content policy refused the input or the output.
    ContentFiltered,
    /// The API key is missing, invalid or revoked.
    Authentication,
    /// The key may not use this model or endpoint.
    Permission,
    /// The model does not exist, or not for this key (an Azure deployment
    /// that is not there).
    ModelNotFound,
    /// Any other request the provider refused as malformed.
    InvalidRequest,
    /// The provider failed on its side.
    ServerError,
}

impl ProviderErrorKind {
    /// Whether the error is the account's, not the call's: a spent quota or
    /// a key refused. Another call to the same provider will fail the same
    /// way for a while, so the call moves on and the provider cools down.
    pub fn is_final_for_provider(self) -> bool {
        matches!(
            self,
            ProviderErrorKind::QuotaExhausted | ProviderErrorKind::Authentication
        )
    }

    /// The HTTP status the error stands for, when a provider sends it inside
    /// a `200` stream: `429` for a rate or a spent quota (as OpenAI answers
    /// both), `529` when overloaded (as Anthropic does), `400` for a refused
    /// request, `401`, `403`, `404`, and `500` for the provider's own failure.
    pub fn status(self) -> StatusCode {
        use ProviderErrorKind as K;
        match self {
            K::RateLimited | K::QuotaExhausted => StatusCode::TOO_MANY_REQUESTS,
            K::Overloaded => StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            K::ContextLengthExceeded | K::ContentFiltered | K::InvalidRequest => {
                StatusCode::BAD_REQUEST
            }
            K::Authentication => StatusCode::UNAUTHORIZED,
            K::Permission => StatusCode::FORBIDDEN,
            K::ModelNotFound => StatusCode::NOT_FOUND,
            K::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short name, for logs and metrics: `rate_limited`,
    /// `quota_exhausted`, `context_length_exceeded`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderErrorKind::RateLimited => "rate_limited",
            ProviderErrorKind::QuotaExhausted => "quota_exhausted",
            ProviderErrorKind::Overloaded => "overloaded",
            ProviderErrorKind::ContextLengthExceeded => "context_length_exceeded",
            ProviderErrorKind::ContentFiltered => "content_filtered",
            ProviderErrorKind::Authentication => "authentication",
            ProviderErrorKind::Permission => "permission",
            ProviderErrorKind::ModelNotFound => "model_not_found",
            ProviderErrorKind::InvalidRequest => "invalid_request",
            ProviderErrorKind::ServerError => "server_error",
        }
    }
}

impl fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider's error, named: its [`kind`](Self::kind), and the provider's
/// own code and message. From [`ProviderError::parse`], or
/// [`Error::provider_error`](crate::Error::provider_error) for a call's
/// error.
///
/// ```
/// use stache_resilience::http::StatusCode;
/// use stache_resilience::provider::{ProviderError, ProviderErrorKind};
///
/// let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
/// let error = ProviderError::parse(StatusCode::from_u16(529).unwrap(), body).unwrap();
/// assert_eq!(error.kind(), ProviderErrorKind::Overloaded);
/// assert_eq!(error.code(), Some("overloaded_error"));
/// assert_eq!(error.message(), Some("Overloaded"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    kind: ProviderErrorKind,
    code: Option<String>,
    message: Option<String>,
}

/// The longest message kept, in bytes: error messages are sentences, and a
/// body is not kept whole here.
const MAX_MESSAGE: usize = 1_024;

/// The longest body read for an error, in bytes: an error is a few hundred
/// bytes, and a large answer of 4xx or 5xx (an HTML page, a proxy's dump)
/// is not one of the shapes above.
const MAX_BODY: usize = 64 * 1024;

impl ProviderError {
    /// Reads the error in a non-2xx answer's `body`: `None` when the body is
    /// not one of the shapes above, or longer than 64 KB (then the status
    /// alone says what the answer means, as it always did).
    pub fn parse(status: StatusCode, body: &[u8]) -> Option<ProviderError> {
        if status.is_success() || body.is_empty() || body.len() > MAX_BODY {
            return None;
        }
        let value: Value = serde_json::from_slice(body).ok()?;
        let said = Said::of(&value)?;
        let kind = said.kind(status);
        Some(ProviderError {
            kind,
            code: said.code.map(Cow::into_owned),
            message: said.message.map(|m| cut(&m).to_owned()),
        })
    }

    /// An error of `kind`, with the provider's own code and message (for a
    /// [`Dialect`](super::dialect::Dialect) of one's own); the message is cut to 1 KB.
    pub fn new(kind: ProviderErrorKind, code: Option<&str>, message: Option<&str>) -> Self {
        ProviderError {
            kind,
            code: code.map(str::to_owned),
            message: message.map(|m| cut(m).to_owned()),
        }
    }

    /// Reads an error a provider sent inside a stream, as the data of an
    /// event: the error bodies above (OpenAI's `{"error": …}` chunk,
    /// Anthropic's `error` event, Ollama's `{"error": "…"}` line), and the
    /// OpenAI Responses API's `error` and `response.failed` events. An
    /// error whose name says nothing is a [`ServerError`](ProviderErrorKind::ServerError).
    pub fn parse_event(data: &[u8]) -> Option<ProviderError> {
        if data.len() > MAX_BODY {
            return None;
        }
        let value: Value = serde_json::from_slice(data).ok()?;
        // `response.failed` holds its error in the response.
        let value = match value.get("response") {
            Some(response) if response.get("error").is_some_and(Value::is_object) => response,
            _ => &value,
        };
        let said = match Said::of(value) {
            Some(said) => said,
            // The Responses API's `error` event: its fields at the top.
            None => {
                let text = |key: &str| value.get(key).and_then(Value::as_str).map(Cow::Borrowed);
                let message = text("message")?;
                let names: Vec<_> = text("code").into_iter().collect();
                Said {
                    code: names.first().cloned(),
                    names,
                    message: Some(message),
                }
            }
        };
        Some(ProviderError {
            kind: said.kind(StatusCode::INTERNAL_SERVER_ERROR),
            code: said.code.map(Cow::into_owned),
            message: said.message.map(|m| cut(&m).to_owned()),
        })
    }

    /// What the error stands for.
    pub fn kind(&self) -> ProviderErrorKind {
        self.kind
    }

    /// The provider's own code: OpenAI's `code` (else `type`), Anthropic's
    /// `error.type`, Gemini's `status`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The provider's message, at most 1 KB of it.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// `text` cut to at most [`MAX_MESSAGE`] bytes, on a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What an error body said, before it is named.
struct Said<'a> {
    /// Codes and types, most telling first.
    names: Vec<Cow<'a, str>>,
    /// The code shown to the caller.
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
}

impl<'a> Said<'a> {
    fn of(value: &'a Value) -> Option<Said<'a>> {
        // Gemini may wrap its error in a one-element array.
        let value = match value {
            Value::Array(items) => items.first()?,
            value => value,
        };
        let object = value.as_object()?;
        match object.get("error") {
            // OpenAI, Azure, Anthropic, Gemini.
            Some(Value::Object(error)) => {
                let text = |key: &str| error.get(key).and_then(Value::as_str).map(Cow::Borrowed);
                let inner = error
                    .get("innererror")
                    .and_then(|i| i.get("code"))
                    .and_then(Value::as_str)
                    .map(Cow::Borrowed);
                let names: Vec<_> = [text("code"), inner, text("type"), text("status")]
                    .into_iter()
                    .flatten()
                    .collect();
                let code = names.first().cloned();
                Some(Said {
                    names,
                    code,
                    message: text("message"),
                })
            }
            // Ollama.
            Some(Value::String(message)) => Some(Said {
                names: Vec::new(),
                code: None,
                message: Some(Cow::Borrowed(message)),
            }),
            // Mistral.
            _ if object.get("object").and_then(Value::as_str) == Some("error") => {
                let text = |key: &str| object.get(key).and_then(Value::as_str).map(Cow::Borrowed);
                let names: Vec<_> = [text("code"), text("type")].into_iter().flatten().collect();
                let message = match object.get("message") {
                    Some(Value::String(message)) => Some(Cow::Borrowed(message.as_str())),
                    Some(other) => Some(Cow::Owned(other.to_string())),
                    None => None,
                };
                Some(Said {
                    code: names.first().cloned(),
                    names,
                    message,
                })
            }
            _ => None,
        }
    }

    /// The kind: by the provider's codes; a broad one ("invalid_request_error",
    /// or none) by the message ("prompt is too long"), then by the status
    /// (a `401`).
    fn kind(&self, status: StatusCode) -> ProviderErrorKind {
        let by_name = self.names.iter().find_map(|name| by_code(name));
        let broad = matches!(
            by_name,
            None | Some(ProviderErrorKind::InvalidRequest | ProviderErrorKind::ServerError)
        );
        if !broad {
            return by_name.unwrap_or(ProviderErrorKind::InvalidRequest);
        }
        if let Some(kind) = self.message.as_deref().and_then(by_message) {
            return kind;
        }
        match (by_name, by_status(status)) {
            (Some(ProviderErrorKind::ServerError), _) => ProviderErrorKind::ServerError,
            (_, ProviderErrorKind::InvalidRequest) => {
                by_name.unwrap_or(ProviderErrorKind::InvalidRequest)
            }
            (_, by_status) => by_status,
        }
    }
}

/// The kind a provider's code or type names, if it names one.
fn by_code(code: &str) -> Option<ProviderErrorKind> {
    use ProviderErrorKind as K;
    Some(match code {
        "insufficient_quota" | "billing_error" | "billing_hard_limit_reached" => K::QuotaExhausted,
        "rate_limit_exceeded"
        | "rate_limit_error"
        | "requests"
        | "tokens"
        | "RESOURCE_EXHAUSTED"
        | "429" => K::RateLimited,
        "overloaded_error" | "overloaded" | "server_overloaded" | "UNAVAILABLE" => K::Overloaded,
        "context_length_exceeded" | "string_above_max_length" => K::ContextLengthExceeded,
        "content_filter" | "content_policy_violation" | "ResponsibleAIPolicyViolation" => {
            K::ContentFiltered
        }
        "invalid_api_key"
        | "authentication_error"
        | "invalid_authentication"
        | "UNAUTHENTICATED"
        | "unauthorized"
        | "401" => K::Authentication,
        "permission_error" | "PERMISSION_DENIED" | "insufficient_permissions" => K::Permission,
        "model_not_found" | "not_found_error" | "NOT_FOUND" | "DeploymentNotFound"
        | "invalid_model" => K::ModelNotFound,
        "invalid_request_error"
        | "INVALID_ARGUMENT"
        | "invalid_request_message_error"
        | "FAILED_PRECONDITION" => K::InvalidRequest,
        "api_error" | "server_error" | "INTERNAL" | "internal_error" => K::ServerError,
        _ => return None,
    })
}

/// The kind a message says, when its code is broad or missing.
fn by_message(message: &str) -> Option<ProviderErrorKind> {
    use ProviderErrorKind as K;
    let message = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| message.contains(w));
    if has(&[
        "context length",
        "context_length",
        "context window",
        "maximum context",
        "prompt is too long",
        "input is too long",
        "too many tokens",
        "maximum number of tokens",
    ]) {
        return Some(K::ContextLengthExceeded);
    }
    if has(&[
        "content filter",
        "content management policy",
        "content policy",
    ]) {
        return Some(K::ContentFiltered);
    }
    if has(&["credit balance", "exceeded your current quota"]) {
        return Some(K::QuotaExhausted);
    }
    if has(&["overloaded"]) {
        return Some(K::Overloaded);
    }
    if message.contains("model") && has(&["not found", "does not exist"]) {
        return Some(K::ModelNotFound);
    }
    None
}

/// The kind the status alone says.
fn by_status(status: StatusCode) -> ProviderErrorKind {
    use ProviderErrorKind as K;
    match status.as_u16() {
        401 => K::Authentication,
        402 => K::QuotaExhausted,
        403 => K::Permission,
        404 => K::ModelNotFound,
        429 => K::RateLimited,
        503 | 529 => K::Overloaded,
        500..=599 => K::ServerError,
        _ => K::InvalidRequest,
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
