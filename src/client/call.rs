//! What a call is made of before it is sent, and how it becomes the request the
//! stack is called with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;

use super::config::MAX_DURATION;
use super::http_client::{HttpClient, StackRequest};
use super::transport::Outgoing;
use crate::deadline::{Attempts, RequestDeadline};
use crate::error::{Error, ErrorKind};
use crate::hedge::NoHedge;
use crate::pool::HoldSlot;
use crate::provider::Model;
use crate::provider::dialect::StreamDialect;
use crate::rate_limit::Cost;
use crate::read_ahead::{ExpectStream, FirstContentTimeout, StreamOptions};
use crate::request_id::RequestId;
use crate::retry::take_mark;
use crate::timeout::RequestTimeout;

/// A call's bound as a whole: when it ends, how long it was given, and the
/// attempts started under it, for the error that says it was exceeded.
#[derive(Debug, Clone)]
pub(super) struct CallDeadline {
    pub(super) at: tokio::time::Instant,
    pub(super) total: Duration,
    pub(super) attempts: Attempts,
}

/// The limits a call ran under, to name the one that fired in its error.
#[derive(Debug, Clone, Default)]
pub(super) struct Limits {
    /// The call's own per-attempt timeout, if it set one.
    pub(super) timeout: Option<Duration>,
    /// Boxed: most calls have none, and the limits are moved with every call.
    pub(super) deadline: Option<Box<CallDeadline>>,
}

/// A call as the request builders collect it. The client it goes through is
/// kept beside it (in the builder, then in the future), not in it.
pub(super) struct Call {
    pub(super) method: Method,
    /// The request's URL: the client's base URL, then the endpoint (escaped
    /// where it must be), then any query added since. Built once, at the
    /// size it needs, and handed to the URI without a copy.
    pub(super) url: String,
    /// Where the endpoint starts in `url`.
    pub(super) endpoint_at: usize,
    /// The first thing a builder method found wrong (a header, a query, a body
    /// that does not serialize), reported at `send`.
    pub(super) problem: Option<Error>,
    pub(super) body: Option<Bytes>,
    /// Whether `body` is JSON, and the request says so.
    pub(super) json: bool,
    pub(super) headers: HeaderMap,
    pub(super) timeout: Option<Duration>,
    /// This call's bound as a whole, overriding the config's `total_timeout`.
    pub(super) deadline: Option<Duration>,
    /// Whether this call is safe to repeat, overriding the method's rule.
    pub(super) idempotent: Option<bool>,
    pub(super) request_id: Option<RequestId>,
    /// The tokens this call will consume, for the client's rate limit.
    pub(super) cost: Option<u32>,
    /// What few calls set (boxed: the call is moved whole into its future).
    pub(super) extras: Option<Box<Extras>>,
}

/// What few calls set: a model, a stream's own options.
#[derive(Debug, Default, Clone)]
pub(super) struct Extras {
    /// The model the call names (set by the caller, or read from its body).
    pub(super) model: Option<Model>,
    /// A streamed call's own dialect and first-token limit, over the
    /// client's.
    pub(super) stream: Option<StreamOptions>,
}

/// What an endpoint may hold as it is: every character an RFC 3986 path or
/// query allows, and `%` (an endpoint's own `%XX` escapes are left alone; a
/// `%` that starts none is escaped after). The rest (controls, a space, `#`
/// (a request carries no fragment), the characters `" < > \ ^ { | } [ ]` and
/// the backtick, and every non-ASCII byte) is percent-encoded.
const ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'#')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'[')
    .add(b']');

impl Call {
    /// A call of `endpoint` on `client`, with no body yet.
    pub(super) fn new(client: &HttpClient, method: Method, endpoint: &str) -> Self {
        let base = &client.inner.base;
        let mut url = String::with_capacity(base.len() + endpoint.len());
        url.push_str(base);
        url.extend(utf8_percent_encode(endpoint, ESCAPED));
        if endpoint.contains('%') {
            url = escape_lone_percents(url, base.len());
        }
        let problem =
            (!endpoint.is_empty() && !endpoint.starts_with('/') && !endpoint.starts_with('?'))
                .then(|| {
                    Error::new(ErrorKind::Request).with_message(format!(
                        "endpoint {:?} must be a path starting with '/'",
                        crate::redact::RedactedEndpoint(endpoint)
                    ))
                });
        Call {
            method,
            endpoint_at: base.len(),
            url,
            problem,
            body: None,
            json: false,
            headers: HeaderMap::new(),
            timeout: None,
            deadline: None,
            idempotent: None,
            request_id: None,
            cost: None,
            extras: None,
        }
    }

    /// The same call again, to send anew (a stream restarted): `None` for a
    /// call that already failed to be made.
    pub(super) fn duplicate(&self) -> Option<Call> {
        if self.problem.is_some() {
            return None;
        }
        Some(Call {
            method: self.method.clone(),
            url: self.url.clone(),
            endpoint_at: self.endpoint_at,
            problem: None,
            body: self.body.clone(),
            json: self.json,
            headers: self.headers.clone(),
            timeout: self.timeout,
            deadline: self.deadline,
            idempotent: self.idempotent,
            request_id: self.request_id.clone(),
            cost: self.cost,
            extras: self.extras.clone(),
        })
    }

    /// Whether this call is safe to repeat: its own mark, else its method's
    /// rule (and the client's for POST and PATCH).
    pub(super) fn safe_to_repeat(&self, client: &HttpClient) -> bool {
        self.idempotent.unwrap_or_else(|| {
            crate::retry::method_is_idempotent(&self.method)
                || (matches!(self.method, Method::POST | Method::PATCH)
                    && client.inner.config.post_is_idempotent)
        })
    }

    /// The dialect a streamed call is read in: its own, else the client's.
    pub(super) fn dialect(&self, client: &HttpClient) -> Option<StreamDialect> {
        self.extras
            .as_ref()
            .and_then(|e| e.stream.as_ref()?.dialect.clone())
            .or_else(|| client.inner.config.stream.dialect.clone())
    }

    /// The model the call names: set by the caller, or the `model` field of
    /// its JSON body (read once, then kept).
    pub(super) fn model(&mut self) -> Option<&Model> {
        let named = self.extras.as_ref().is_some_and(|e| e.model.is_some());
        if !named && self.json {
            if let Some(model) = self.body.as_deref().and_then(Model::from_json) {
                self.extras.get_or_insert_with(Box::default).model = Some(model);
            }
        }
        self.extras.as_ref()?.model.as_ref()
    }

    /// The endpoint as it will be sent (escaped, with any query added).
    pub(super) fn endpoint(&self) -> &str {
        self.url.get(self.endpoint_at..).unwrap_or_default()
    }

    /// Keeps `problem` to report at `send`, unless an earlier one is kept.
    pub(super) fn fail(&mut self, problem: Error) {
        if self.problem.is_none() {
            self.problem = Some(problem);
        }
    }

    /// Sets the body; `json` says whether it is JSON.
    pub(super) fn set_body(&mut self, body: Result<Bytes, Error>, json: bool) {
        match body {
            Ok(body) => {
                self.body = Some(body);
                self.json = json;
            }
            Err(e) => self.fail(e),
        }
    }

    /// Appends `query` (already encoded) to the URL's query.
    pub(super) fn add_query(&mut self, query: &str) {
        if query.is_empty() {
            return;
        }
        match self.url.find('?') {
            None => self.url.push('?'),
            Some(at) if at + 1 == self.url.len() || self.url.ends_with('&') => {}
            Some(_) => self.url.push('&'),
        }
        self.url.push_str(query);
    }

    /// The path the request goes to, as its URI will have it (the base URL's
    /// path, then the endpoint's, without the query), for the call's span.
    pub(super) fn path<'a>(&'a self, client: &'a HttpClient) -> impl fmt::Display + 'a {
        CallPath {
            base: &client.inner.base_path,
            endpoint: self.endpoint().split('?').next().unwrap_or_default(),
        }
    }

    /// The limits this call runs under; the deadline, if any, starts now.
    pub(super) fn limits(&self, client: &HttpClient) -> Result<Limits, Error> {
        let mut limits = Limits::default();
        self.set_limits(client, &mut limits)?;
        Ok(limits)
    }

    /// Sets `limits` (default ones, as given) to this call's; the deadline, if
    /// any, starts now. Most calls set none, and leave `limits` as they are.
    #[inline]
    pub(super) fn set_limits(&self, client: &HttpClient, limits: &mut Limits) -> Result<(), Error> {
        let config = &client.inner.config;
        if self.timeout.is_none() && self.deadline.is_none() && config.retry.total_timeout.is_none()
        {
            return Ok(());
        }
        *limits = self.limits_slow(client)?;
        Ok(())
    }

    #[cold]
    fn limits_slow(&self, client: &HttpClient) -> Result<Limits, Error> {
        let config = &client.inner.config;
        if let Some(timeout) = self.timeout {
            check_duration("timeout", timeout)?;
        }
        let deadline = match self.deadline.or(config.retry.total_timeout) {
            None => None,
            Some(total) => {
                check_duration("deadline", total)?;
                Some(Box::new(CallDeadline {
                    at: tokio::time::Instant::now() + total,
                    total,
                    attempts: Attempts::default(),
                }))
            }
        };
        Ok(Limits {
            timeout: self.timeout,
            deadline,
        })
    }

    /// The request the stack is called with, under `id`.
    pub(super) fn build(
        mut self,
        client: &HttpClient,
        streaming: bool,
        id: &RequestId,
        limits: &Limits,
    ) -> Result<StackRequest, Error> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let inner = &*client.inner;
        if let Some(flag) = take_mark(&mut self.headers) {
            self.idempotent = Some(flag);
        }
        if let Some(name) = &inner.config.idempotency_key {
            if self.method != Method::GET && !self.headers.contains_key(name) {
                self.headers.insert(name.clone(), idempotency_key());
            }
        }
        let uri = http::Uri::try_from(self.url).map_err(|e| {
            Error::new(ErrorKind::Request)
                .with_message(format!("the endpoint does not form a valid URL: {e}"))
                .with_source(e)
        })?;
        // The request's own header map stays empty: the transport builds each
        // attempt's headers from the shared template, so the copy the retry layer
        // keeps costs a few reference counts rather than a header map.
        let outgoing = Outgoing {
            headers: inner.templates.pick(self.json, streaming).clone(),
            extra: (!self.headers.is_empty()).then(|| Arc::new(self.headers)),
            id: id.header_value().clone(),
            body: self.body.unwrap_or_default(),
            // Decided by the retry layer, from the method, only if it retries.
            idempotent: self.idempotent,
            post_is_idempotent: inner.config.post_is_idempotent,
        };
        let mut request = http::Request::new(outgoing);
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        // The ID goes in the header alone: nothing below the client reads it from
        // the extensions, and putting it there would cost allocations on every
        // copy the retry layer keeps.
        let extensions = request.extensions_mut();
        if let Some(limit) = self.timeout {
            extensions.insert(RequestTimeout(limit));
        }
        if let Some(deadline) = &limits.deadline {
            extensions.insert(RequestDeadline(deadline.at));
            extensions.insert(deadline.attempts.clone());
        }
        if let Some(cost) = self.cost {
            extensions.insert(Cost(cost));
        }
        if streaming {
            extensions.insert(ExpectStream);
            extensions.insert(HoldSlot);
            extensions.insert(NoHedge);
            let own = self.extras.as_ref().and_then(|e| e.stream.as_ref());
            let config = &inner.config.stream;
            if let Some(dialect) = own
                .and_then(|s| s.dialect.as_ref())
                .or(config.dialect.as_ref())
            {
                extensions.insert(dialect.clone());
            }
            if let Some(limit) = own
                .and_then(|s| s.first_token_timeout)
                .or(config.first_token_timeout)
            {
                extensions.insert(FirstContentTimeout(limit));
            }
        }
        // What a per-model rate limit keys its gate and pace by.
        let model = match self.extras.and_then(|e| e.model) {
            Some(model) => Some(model),
            None if self.json && inner.config.rate_limit_per_model => {
                Model::from_json(&request.body().body)
            }
            None => None,
        };
        if let Some(model) = model {
            request.extensions_mut().insert(model);
        }
        Ok(request)
    }
}

/// `url` with every `%` after `from` that does not start a `%XX` escape
/// written as `%25`.
fn escape_lone_percents(url: String, from: usize) -> String {
    let bytes = url.as_bytes();
    let lone = |at: usize| {
        bytes[at] == b'%'
            && !(bytes.len() > at + 2
                && bytes[at + 1].is_ascii_hexdigit()
                && bytes[at + 2].is_ascii_hexdigit())
    };
    if !(from..bytes.len()).any(lone) {
        return url;
    }
    let mut escaped = String::with_capacity(url.len() + 8);
    for (at, c) in url.char_indices() {
        if at >= from && c == '%' && lone(at) {
            escaped.push_str("%25");
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// A per-call duration checked as the config's are: above zero, at most
/// [`MAX_DURATION`].
fn check_duration(name: &str, value: Duration) -> Result<(), Error> {
    if value.is_zero() || value > MAX_DURATION {
        return Err(Error::new(ErrorKind::Request).with_message(format!(
            "{name} must be greater than zero and at most {} days (got {value:?})",
            MAX_DURATION.as_secs() / 86_400
        )));
    }
    Ok(())
}

/// A fresh idempotency key: 32 random hex digits.
fn idempotency_key() -> http::HeaderValue {
    let key = format!("{:032x}", rand::random::<u128>());
    // Hex digits are always a valid header value.
    http::HeaderValue::try_from(key).unwrap_or(http::HeaderValue::from_static("0"))
}

/// A body serialized as JSON, or the `Request` error that says why it is not.
pub(super) fn json_body<T: Serialize + ?Sized>(body: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| {
        Error::new(ErrorKind::Request)
            .with_message(format!("the body does not serialize to JSON: {e}"))
            .with_source(e)
    })
}

/// A call's path, written without building it.
struct CallPath<'a> {
    base: &'a str,
    endpoint: &'a str,
}

impl fmt::Display for CallPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.base.is_empty() && self.endpoint.is_empty() {
            return f.write_str("/");
        }
        f.write_str(self.base)?;
        f.write_str(self.endpoint)
    }
}
