//! The crate's errors: [`Error`] and its [`ErrorKind`], [`ConfigError`], and (in
//! [`layer`] and [`body`]) the errors the layers and the body readers add, which
//! the classifier recognises. They live here, below every layer, so that the
//! shared classifier can read them all; each layer re-exports its own.

mod body;
mod kind;
mod layer;
mod provider;

pub use self::body::{BodyError, BodyTooLarge, StreamCut};
pub use self::kind::ErrorKind;
pub use self::layer::{
    CircuitOpen, Elapsed, Injected, PoolTimeout, RateLimited, StreamStalled, WriteStalled,
};
pub use self::provider::ProviderFailure;

/// A type-erased error, as returned by layers that add a failure mode of their own.
///
/// Concrete errors inside can be recovered with
/// [`downcast_ref`](std::error::Error#method.downcast_ref), for example
/// `err.is::<stache_resilience::circuit_breaker::CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

/// A setting that breaks a rule; names the field and the rule.
///
/// ```
/// use stache_resilience::ConfigError;
/// let err = ConfigError::new("max_connections", "must be at least 1");
/// assert_eq!(err.to_string(), "invalid max_connections: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    rule: Cow<'static, str>,
}

impl ConfigError {
    /// An error for `field` breaking `rule`.
    pub fn new(field: &'static str, rule: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            rule: rule.into(),
        }
    }

    /// The name of the offending field.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it breaks.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.rule)
    }
}

impl std::error::Error for ConfigError {}

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::redact::Redacted;
use crate::request_id::RequestId;

/// The error of every [`HttpClient`](crate::HttpClient) call.
///
/// One opaque type with predicates, in the style of hyper-util's client error:
/// ask [`is_circuit_open`](Self::is_circuit_open),
/// [`is_timeout`](Self::is_timeout), [`is_connect`](Self::is_connect),
/// [`status`](Self::status) and so on, or match on [`kind`](Self::kind). The cause
/// is kept as the [`source`](std::error::Error::source) chain; the request ID of
/// the call, if it got one, is in [`request_id`](Self::request_id).
///
/// An open circuit displays exactly `Circuit breaker OPEN - rejecting request`.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    source: Option<BoxError>,
    request_id: Option<RequestId>,
    status: Option<StatusCode>,
    headers: Option<HeaderMap>,
    body: Option<String>,
    message: Option<Cow<'static, str>>,
    /// The failover group member that failed last, if the call went through one.
    provider: Option<std::sync::Arc<str>>,
    /// Each group member's failure, in order.
    attempts: Vec<ProviderFailure>,
    /// The provider's error, named where it was read (an in-band error).
    named: Option<crate::provider::ProviderError>,
    /// For a stream that failed after it was handed over: how much came.
    cut: Option<StreamCut>,
}

/// The most of an error response's body an [`Error`] keeps, in bytes.
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                source: None,
                request_id: None,
                status: None,
                headers: None,
                body: None,
                message: None,
                provider: None,
                attempts: Vec::new(),
                named: None,
                cut: None,
            }),
        }
    }

    /// Sets the provider's error, as read from where it came.
    pub(crate) fn with_provider_error(mut self, named: crate::provider::ProviderError) -> Self {
        self.inner.named = Some(named);
        self
    }

    /// Sets the status the error stands for (an error sent inside a stream).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Marks the error as a stream's, cut after `cut`.
    pub(crate) fn with_cut(mut self, cut: StreamCut) -> Self {
        self.inner.cut = Some(cut);
        self
    }

    /// Whether a stream broke after content and restarted from the
    /// beginning (see
    /// [restarted streams](crate::client::StreamResponse#restarted-streams)):
    /// discard what was read before this error, and read on.
    pub fn is_stream_restarted(&self) -> bool {
        self.inner.cut.is_some_and(|c| c.restarted())
    }

    /// This stream error as the notice that the stream restarted.
    pub(crate) fn restarted(mut self, message: String) -> Self {
        self.inner.message = Some(message.into());
        if let Some(cut) = &mut self.inner.cut {
            *cut = cut.with_restart();
        }
        self
    }

    /// This stream error, whose restart failed with `failed`: its own
    /// message first (never hidden by the next provider's), then how the
    /// restart failed; the providers tried, as the restart's error lists them.
    pub(crate) fn restart_failed(mut self, failed: Error) -> Self {
        let message = format!("{self}; restarting it failed: {failed}");
        self.inner.message = Some(message.into());
        if !failed.inner.attempts.is_empty() {
            self.inner.attempts = failed.inner.attempts;
        }
        self
    }

    /// For a stream that failed after it was handed to the caller: how much
    /// of it had arrived (see [`StreamCut`]). `None` for any other error.
    pub fn stream_cut(&self) -> Option<&StreamCut> {
        self.inner.cut.as_ref()
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.inner.message = Some(message.into());
        self
    }

    /// Whether a message was set (it then replaces the generic text).
    pub(crate) fn has_message(&self) -> bool {
        self.inner.message.is_some()
    }

    pub(crate) fn with_request_id(mut self, id: RequestId) -> Self {
        self.inner.request_id = Some(id);
        self
    }

    /// The error of a call the open circuit refused.
    pub(crate) fn circuit_open() -> Self {
        Error::new(ErrorKind::CircuitOpen).with_source(CircuitOpen::new())
    }

    pub(crate) fn config(error: ConfigError) -> Self {
        Error::new(ErrorKind::Config).with_source(error)
    }

    /// A non-2xx answer, keeping at most [`MAX_ERROR_BODY_BYTES`] of its body.
    pub(crate) fn from_status(status: StatusCode, headers: HeaderMap, body: &[u8]) -> Self {
        let mut end = body.len().min(MAX_ERROR_BODY_BYTES);
        // Cut on a character boundary when the body is UTF-8.
        while end > 0 && end < body.len() && (body[end] & 0b1100_0000) == 0b1000_0000 {
            end -= 1;
        }
        let mut error = Error::new(ErrorKind::Status);
        error.inner.status = Some(status);
        error.inner.headers = Some(headers);
        error.inner.body = Some(String::from_utf8_lossy(&body[..end]).into_owned());
        error
    }

    /// Turns an error from the layer stack into an `Error` of the right kind.
    pub(crate) fn from_stack(error: BoxError) -> Self {
        let kind = ErrorKind::of(&*error).unwrap_or(ErrorKind::Transport);
        if kind == ErrorKind::CircuitOpen {
            // The source adds nothing to the message, and keeping it would make
            // the chain print the same sentence twice.
            return Error::circuit_open();
        }
        Error::new(kind).with_source(error)
    }

    /// The broad kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether the circuit breaker refused the call (nothing was sent).
    pub fn is_circuit_open(&self) -> bool {
        self.inner.kind == ErrorKind::CircuitOpen
    }

    /// Whether something ran out of time: an attempt, a connect, a socket write,
    /// or a stream waiting for its next chunk.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
            || self.inner.source.as_deref().is_some_and(|source| {
                chain(source).any(|e| {
                    e.is::<Elapsed>()
                        || e.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                })
            })
    }

    /// Whether the call's deadline (its `total_timeout` or
    /// [`deadline`](crate::client::RequestBuilder::deadline)) cut it short. Such an
    /// error is also a timeout ([`is_timeout`](Self::is_timeout)); an attempt's
    /// own timeout is not a deadline.
    pub fn is_deadline(&self) -> bool {
        self.inner
            .source
            .as_deref()
            .is_some_and(|source| cut_by_deadline(source))
    }

    /// Whether the connection could not be made.
    pub fn is_connect(&self) -> bool {
        self.inner.kind == ErrorKind::Connect
    }

    /// Whether no connection slot came free in time.
    pub fn is_pool_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::PoolTimeout
    }

    /// Whether a rate limit stopped the call: the limiter refused to wait
    /// past the call's deadline and sent nothing ([`ErrorKind::RateLimited`]),
    /// or the provider's last answer was `429 Too Many Requests` (a
    /// [`Status`](ErrorKind::Status) error).
    pub fn is_rate_limited(&self) -> bool {
        self.inner.kind == ErrorKind::RateLimited
            || self.inner.status == Some(StatusCode::TOO_MANY_REQUESTS)
    }

    /// Whether the server answered with a non-2xx status.
    pub fn is_status(&self) -> bool {
        self.inner.kind == ErrorKind::Status
    }

    /// Whether the body was too large, broken, or not valid text.
    pub fn is_body(&self) -> bool {
        self.inner.kind == ErrorKind::Body
    }

    /// Whether the body was not the expected JSON.
    pub fn is_decode(&self) -> bool {
        self.inner.kind == ErrorKind::Decode
    }

    /// The status of a non-2xx answer.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The headers of a non-2xx answer.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.inner.headers.as_ref()
    }

    /// The start of a non-2xx answer's body (at most [`MAX_ERROR_BODY_BYTES`],
    /// invalid UTF-8 replaced).
    pub fn body_text(&self) -> Option<&str> {
        self.inner.body.as_deref()
    }

    /// What the provider's error says, by name, for a non-2xx answer whose
    /// body is an error of a known API (OpenAI, Azure OpenAI, Anthropic,
    /// Gemini, Mistral, Ollama): a spent quota, a context too long, a
    /// content filter, …; see [`ProviderError`](crate::provider::ProviderError).
    /// `None` for any other answer or error. Read from the kept body each
    /// time it is asked.
    ///
    /// ```
    /// # fn route(error: stache_resilience::Error) {
    /// use stache_resilience::provider::ProviderErrorKind;
    ///
    /// match error.provider_error().map(|e| e.kind()) {
    ///     Some(ProviderErrorKind::ContextLengthExceeded) => { /* a model with a larger window */ }
    ///     Some(ProviderErrorKind::ContentFiltered) => { /* tell the user why */ }
    ///     _ => {}
    /// }
    /// # }
    /// ```
    pub fn provider_error(&self) -> Option<crate::provider::ProviderError> {
        if let Some(named) = &self.inner.named {
            return Some(named.clone());
        }
        let body = self.inner.body.as_deref()?;
        crate::provider::ProviderError::parse(self.inner.status?, body.as_bytes())
    }

    /// The wait a non-2xx answer asked for: `retry-after-ms` (or
    /// `x-ms-retry-after-ms`) when present, else `Retry-After` in seconds or as a
    /// date (relative to now).
    pub fn retry_after(&self) -> Option<Duration> {
        let headers = self.inner.headers.as_ref()?;
        crate::retry_after::headers_retry_after(headers, SystemTime::now())
    }

    /// The ID of the call, as sent in `x-request-id` and logged.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.inner.request_id.as_ref()
    }

    /// The provider that failed last, when the call went through a
    /// [`ProviderGroup`](crate::failover::ProviderGroup).
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// Each provider's failure, in the order they were tried, when the call
    /// went through a [`ProviderGroup`](crate::failover::ProviderGroup); empty
    /// otherwise. This error itself is the last one's.
    pub fn attempts(&self) -> &[ProviderFailure] {
        &self.inner.attempts
    }

    /// Tags the error with the group member it came from, and every member's
    /// failure so far (this one last).
    pub(crate) fn with_attempts(
        mut self,
        provider: std::sync::Arc<str>,
        mut attempts: Vec<ProviderFailure>,
    ) -> Self {
        attempts.push(ProviderFailure::of(provider.clone(), &self));
        self.inner.provider = Some(provider);
        self.inner.attempts = attempts;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let root = || {
            inner
                .source
                .as_deref()
                .and_then(|s| chain(s).last())
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        // A message, when the client set one, is the whole sentence: it names the
        // limit or setting that fired.
        if let Some(message) = &inner.message {
            if !matches!(inner.kind, ErrorKind::Request | ErrorKind::CircuitOpen) {
                return f.write_str(message);
            }
        }
        match inner.kind {
            ErrorKind::CircuitOpen => f.write_str("Circuit breaker OPEN - rejecting request"),
            ErrorKind::Status => {
                let status = inner.status.map(|s| s.to_string()).unwrap_or_default();
                write!(f, "server answered {status}")?;
                match inner.body.as_deref().map(str::trim) {
                    Some(body) if !body.is_empty() => {
                        let snippet: String = body.chars().take(200).collect();
                        let more = if snippet.len() < body.len() {
                            "…"
                        } else {
                            ""
                        };
                        write!(f, ": {snippet}{more}")
                    }
                    _ => Ok(()),
                }
            }
            ErrorKind::Timeout => write!(f, "timed out: {}", root()),
            ErrorKind::PoolTimeout | ErrorKind::RateLimited => f.write_str(&root()),
            ErrorKind::Connect => write!(f, "could not connect: {}", root()),
            ErrorKind::Transport => write!(f, "connection failed: {}", root()),
            ErrorKind::Body => write!(f, "bad response body: {}", root()),
            ErrorKind::Decode => write!(f, "unexpected response: {}", root()),
            ErrorKind::Config => write!(f, "{}", root()),
            ErrorKind::Request => match &inner.message {
                Some(message) => write!(f, "invalid request: {message}"),
                None => write!(f, "invalid request: {}", root()),
            },
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &inner.kind);
        d.field("reason", &format_args!("{self}"));
        if let Some(id) = &inner.request_id {
            d.field("request_id", &id.as_str());
        }
        if let Some(status) = inner.status {
            d.field("status", &status);
        }
        if let Some(headers) = &inner.headers {
            d.field("headers", &Redacted(headers));
        }
        if let Some(body) = &inner.body {
            d.field("body", body);
        }
        if let Some(provider) = &inner.provider {
            d.field("provider", provider);
        }
        if !inner.attempts.is_empty() {
            d.field("attempts", &inner.attempts);
        }
        if let Some(source) = &inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|e| e as _)
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Error::config(error)
    }
}

/// Whether an error, or one of its sources, is an [`Elapsed`] cut by the call's
/// deadline.
pub(crate) fn cut_by_deadline(error: &(dyn StdError + 'static)) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<Elapsed>()
            .is_some_and(Elapsed::is_deadline)
    })
}

/// Iterates over an error and its sources.
pub(crate) fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| {
        (*e).source()
    })
}
