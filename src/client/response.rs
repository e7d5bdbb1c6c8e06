//! What a successful buffered call returns: [`Response`].

use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};
use crate::redact::Redacted;
use crate::request_id::RequestId;

/// A 2xx response whose body was read in full during the attempt.
///
/// Every accessor is synchronous: the network part is over.
#[derive(Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    request_id: RequestId,
    provider: Option<std::sync::Arc<str>>,
}

impl Response {
    pub(crate) fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        request_id: RequestId,
    ) -> Self {
        Response {
            status,
            headers,
            body,
            request_id,
            provider: None,
        }
    }

    /// Tags the response with the failover group member that answered.
    pub(crate) fn with_provider(mut self, provider: std::sync::Arc<str>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The provider that answered, when the call went through a
    /// [`ProviderGroup`](crate::failover::ProviderGroup).
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The model that answered, as the answer's JSON body says (`model`, or
    /// Gemini's `modelVersion`): after a failover, the fallback's. `None`
    /// for a body that does not say. The body is read each time this is
    /// asked.
    pub fn model(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        crate::provider::answering_model(&value).map(str::to_owned)
    }

    /// The tokens the answer used, as its JSON body reports them (OpenAI's,
    /// Anthropic's, Gemini's and Ollama's fields: see
    /// [`Usage`](crate::provider::Usage)). `None` for a body that reports
    /// none. The body is read each time this is asked.
    pub fn usage(&self) -> Option<crate::provider::Usage> {
        crate::provider::Usage::from_json(&self.body)
    }

    /// The status code (always 2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The ID the call was sent with.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The body (a cheap reference-counted handle).
    ///
    /// Unlike reqwest's, this and the other body methods are not `async`: the
    /// body was read in full inside the attempt (so that a body that broke off
    /// was retried like any failed attempt), and nothing is left to wait for.
    pub fn bytes(&self) -> Bytes {
        self.body.clone()
    }

    /// The body as UTF-8 text (already read: see [`bytes`](Self::bytes)).
    ///
    /// # Errors
    ///
    /// A body error ([`Error::is_body`]) if the body is compressed (its
    /// `content-encoding` is named) or is not valid UTF-8.
    pub fn text(&self) -> Result<String, Error> {
        if let Some(error) = self.encoded() {
            return Err(error);
        }
        String::from_utf8(self.body.to_vec()).map_err(|e| {
            Error::new(ErrorKind::Body)
                .with_message(format!(
                    "the body is not UTF-8 text ({}): {e}",
                    self.content_type()
                ))
                .with_source(e)
                .with_request_id(self.request_id.clone())
        })
    }

    /// The body parsed as JSON into `T` (already read: see [`bytes`](Self::bytes)).
    ///
    /// # Errors
    ///
    /// A decode error ([`Error::is_decode`]) naming where the JSON and `T` part,
    /// and, for a body that is not JSON at all, its content type and first bytes
    /// (`expected JSON, got text/html: "<html>…"`); a body error if the body is
    /// compressed, naming its `content-encoding`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if let Some(error) = self.encoded() {
            return Err(error);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            let start = BodyStart(&self.body);
            let message = match self.headers.get(CONTENT_TYPE) {
                Some(_) if !self.content_type().contains("json") => {
                    format!("expected JSON, got {}: {start}", self.content_type())
                }
                _ => format!("the body is not the JSON expected: {e}; it starts {start}"),
            };
            Error::new(ErrorKind::Decode)
                .with_message(message)
                .with_source(e)
                .with_request_id(self.request_id.clone())
        })
    }

    /// The `content-type`, or `no content-type`, for error messages.
    fn content_type(&self) -> &str {
        match self.headers.get(CONTENT_TYPE) {
            Some(value) => value.to_str().unwrap_or("a content-type that is not text"),
            None => "no content-type",
        }
    }

    /// The error for a body sent compressed, which this build does not decode.
    fn encoded(&self) -> Option<Error> {
        let encoding = self.headers.get(CONTENT_ENCODING)?;
        let encoding = encoding.to_str().unwrap_or("?");
        if encoding.eq_ignore_ascii_case("identity") {
            return None;
        }
        Some(
            Error::new(ErrorKind::Body)
                .with_message(format!(
                    "the body is compressed (content-encoding: {encoding}) and was not decoded; {}",
                    if cfg!(feature = "compression") {
                        "only gzip, br and zstd are decoded"
                    } else {
                        "enable the `compression` feature, or do not send `accept-encoding`"
                    }
                ))
                .with_request_id(self.request_id.clone()),
        )
    }
}

/// The first bytes of a body, quoted, for an error message.
struct BodyStart<'a>(&'a [u8]);

impl fmt::Display for BodyStart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        let text = String::from_utf8_lossy(shown);
        let quoted = format!("{:?}", text.as_ref());
        match quoted.strip_suffix('"') {
            Some(open) if self.0.len() > SHOWN => write!(f, "{open}…\""),
            _ => f.write_str(&quoted),
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("provider", &self.provider)
            .field("request_id", &self.request_id.as_str())
            .field("headers", &Redacted(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}
