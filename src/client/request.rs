//! Building a call: [`HttpClient`]'s request methods, [`RequestBuilder`] and
//! [`StreamRequestBuilder`].

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Serialize;

use super::call::{Call, json_body};
use super::future::Pending;
use super::http_client::HttpClient;
use super::response::Response;
use super::stream::send_streaming;
use super::stream_response::StreamResponse;
use crate::error::{Error, ErrorKind};
use crate::provider::Model;
use crate::provider::dialect::{Dialect, StreamDialect};
use crate::read_ahead::StreamOptions;
use crate::redact::is_sensitive;
use crate::request_id::RequestId;

impl HttpClient {
    /// A `GET` of `endpoint` (appended to the base URL).
    ///
    /// The endpoint is a path, with a query if wanted (`/search?q=café`):
    /// characters a URL cannot carry as they are (a space, `é`) are
    /// percent-encoded, and `%XX` escapes already in it are kept.
    pub fn get(&self, endpoint: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::GET, endpoint)
    }

    /// A `POST` of `body`, serialized as JSON, to `endpoint`.
    ///
    /// The body is serialized here; an error doing so is the call's error when
    /// it is sent. For a `POST` without a body, or with another kind of body,
    /// use [`request`](Self::request) with [`Method::POST`].
    pub fn post<T: Serialize + ?Sized>(
        &self,
        endpoint: impl AsRef<str>,
        body: &T,
    ) -> RequestBuilder {
        self.request(Method::POST, endpoint).json(body)
    }

    /// A `PUT` of `endpoint`; add a body with [`RequestBuilder::json`] or
    /// [`RequestBuilder::body`].
    pub fn put(&self, endpoint: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PUT, endpoint)
    }

    /// A `PATCH` of `endpoint`; add a body with [`RequestBuilder::json`] or
    /// [`RequestBuilder::body`]. Like a `POST`, it is retried after a failure
    /// that may have reached the server only when
    /// [`post_is_idempotent`](crate::HttpClientConfig::post_is_idempotent) is set.
    pub fn patch(&self, endpoint: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PATCH, endpoint)
    }

    /// A `DELETE` of `endpoint`.
    pub fn delete(&self, endpoint: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::DELETE, endpoint)
    }

    /// A `HEAD` of `endpoint`.
    pub fn head(&self, endpoint: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::HEAD, endpoint)
    }

    /// A request with any method and no body yet.
    pub fn request(&self, method: Method, endpoint: impl AsRef<str>) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            call: Call::new(self, method, endpoint.as_ref()),
        }
    }

    /// A `POST` whose response is read as it arrives, line by line (NDJSON):
    /// the same as `client.post(endpoint, body).stream()`.
    pub fn stream_post<T: Serialize + ?Sized>(
        &self,
        endpoint: impl AsRef<str>,
        body: &T,
    ) -> StreamRequestBuilder {
        self.post(endpoint, body).stream()
    }
}

/// A request being prepared; `.await` it (or [`send`](Self::send) it) to send it.
///
/// Built by [`HttpClient::get`], [`HttpClient::post`], [`HttpClient::request`]
/// and the other methods named after HTTP's. It owns what it needs (a handle on
/// the client, its own copy of the endpoint), so its future can be spawned:
///
/// ```
/// # async fn run(client: stache_resilience::HttpClient, path: String) {
/// let call = tokio::spawn(client.get(&path).query(&[("limit", 10)]).send());
/// # drop(call); }
/// ```
///
/// A method given something it cannot use (a header name that is not one, a
/// query that does not serialize) does not panic: the call fails when it is
/// sent, with a [`Request`](crate::ErrorKind::Request) error that says which.
#[must_use = "a request does nothing until it is awaited"]
pub struct RequestBuilder {
    client: HttpClient,
    call: Call,
}

impl RequestBuilder {
    /// Overrides the provider's per-attempt timeout for this request.
    ///
    /// Zero, or more than a year, fails the call with a request error.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.call.timeout = Some(timeout);
        self
    }

    /// Bounds this call as a whole — every attempt, every wait between them —
    /// overriding the provider's [`retry.total_timeout`](crate::retry::RetryOptions::total_timeout).
    ///
    /// No retry starts whose wait would end past it; an attempt running when it
    /// passes is cut, and the call fails with an error for which
    /// [`Error::is_deadline`] is true.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.call.deadline = Some(deadline);
        self
    }

    /// Marks this call as safe to repeat or not, whatever its method and the
    /// provider's [`post_is_idempotent`](crate::HttpClientConfig::post_is_idempotent).
    /// A call that is not is retried only when the server provably did not act
    /// on it (see [`Replay`](crate::retry::Replay)).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.call.idempotent = Some(idempotent);
        self
    }

    /// Declares the tokens this call will consume (for example the prompt's
    /// estimated tokens plus `max_tokens`), for a
    /// [`rate_limit`](crate::HttpClientConfig::rate_limit) with
    /// `tokens_per_minute`: the call waits until the tokens sent before it are
    /// earned back. Without it a call costs no tokens.
    pub fn cost(mut self, tokens: u32) -> Self {
        self.call.cost = Some(tokens);
        self
    }

    /// Names the model this call asks for: a client with
    /// [`rate_limit_per_model`](crate::HttpClientConfig::rate_limit_per_model)
    /// keeps its rate limiter's gate and pace apart per model (see
    /// [`Model`]). Without it, such a client reads the `model` field of the
    /// call's JSON body.
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.call.extras.get_or_insert_with(Box::default).model = Some(Model::new(model));
        self
    }

    /// Sets the body to `body` serialized as JSON, with
    /// `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.call.set_body(json_body(body), true);
        self
    }

    /// Sets the body to `body` as it is. No `content-type` is sent unless a
    /// header sets one.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.call.set_body(Ok(body.into()), false);
        self
    }

    /// Adds a header for this request only (after the client's own; a name
    /// given more than once is sent with each value).
    ///
    /// The value of a header whose name marks it secret (`authorization`,
    /// `x-api-key`, any name with `token` or `secret`, …) is redacted from logs
    /// and `Debug` output, as the config's headers are.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        let name = match name.try_into() {
            Ok(name) => name,
            Err(e) => {
                let e: http::Error = e.into();
                self.call.fail(
                    Error::new(ErrorKind::Request)
                        .with_message(format!("a header name given to `header` is not valid: {e}"))
                        .with_source(e),
                );
                return self;
            }
        };
        match value.try_into() {
            Ok(value) => self.add_header(name, value, false),
            Err(e) => {
                let e: http::Error = e.into();
                // The value is not repeated: it may be a secret.
                self.call.fail(
                    Error::new(ErrorKind::Request)
                        .with_message(format!("the value of header `{name}` is not valid: {e}"))
                        .with_source(e),
                );
            }
        }
        self
    }

    /// Adds every header of `headers`, each replacing the values this request
    /// already has for its name.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        let mut name = None;
        for (next, value) in headers {
            // The first value of each name comes with it, the others without.
            let replace = next.is_some();
            if next.is_some() {
                name = next;
            }
            let Some(name) = &name else { continue };
            self.add_header(name.clone(), value, replace);
        }
        self
    }

    /// Sends `authorization: Bearer <token>`, redacted from logs.
    pub fn bearer_auth(self, token: impl fmt::Display) -> Self {
        let value = secret_value(format!("Bearer {token}"));
        self.set_authorization(value)
    }

    /// Sends `authorization: Basic …` for `username` and `password` (HTTP Basic
    /// authentication), redacted from logs.
    pub fn basic_auth(
        self,
        username: impl fmt::Display,
        password: Option<impl fmt::Display>,
    ) -> Self {
        use base64::Engine as _;
        let pair = match password {
            Some(password) => format!("{username}:{password}"),
            None => format!("{username}:"),
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        let value = secret_value(format!("Basic {encoded}"));
        self.set_authorization(value)
    }

    /// Adds `query` to the URL's query string (after any the endpoint has),
    /// form-encoded: a slice of pairs, a map, or a struct of named fields.
    ///
    /// ```
    /// # fn run(client: stache_resilience::HttpClient) {
    /// let call = client.get("/search").query(&[("q", "café au lait"), ("page", "2")]);
    /// // sent as /search?q=caf%C3%A9+au+lait&page=2
    /// # drop(call); }
    /// ```
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(encoded) => self.call.add_query(&encoded),
            Err(e) => self.call.fail(
                Error::new(ErrorKind::Request)
                    .with_message(format!("the query does not serialize: {e}"))
                    .with_source(e),
            ),
        }
        self
    }

    /// Sends the request under `id` instead of a fresh one — to carry an incoming
    /// request's ID on to the calls it makes.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.call.request_id = Some(id);
        self
    }

    /// Asks for the answer as a stream, read as it arrives (NDJSON lines),
    /// instead of buffered: `.await` the result to get a [`StreamResponse`].
    pub fn stream(self) -> StreamRequestBuilder {
        StreamRequestBuilder {
            request: self,
            restart: false,
        }
    }

    /// Sends the request; the same as `.await`. The future owns everything it
    /// needs, so it is `Send + 'static` and can be spawned.
    pub fn send(self) -> Pending {
        Pending::new(self.client, self.call)
    }

    fn add_header(&mut self, name: HeaderName, mut value: HeaderValue, replace: bool) {
        if is_sensitive(&name) {
            value.set_sensitive(true);
        }
        if replace {
            self.call.headers.insert(name, value);
        } else {
            self.call.headers.append(name, value);
        }
    }

    fn set_authorization(mut self, value: Result<HeaderValue, Error>) -> Self {
        match value {
            Ok(value) => self.add_header(AUTHORIZATION, value, true),
            Err(e) => self.call.fail(e),
        }
        self
    }
}

/// A secret header value, marked sensitive; an error that does not repeat it.
fn secret_value(value: String) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::try_from(value).map_err(|e| {
        Error::new(ErrorKind::Request)
            .with_message(format!(
                "the credentials do not form a valid header value: {e}"
            ))
            .with_source(e)
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl IntoFuture for RequestBuilder {
    type Output = Result<Response, Error>;
    type IntoFuture = Pending;

    fn into_future(self) -> Self::IntoFuture {
        self.send()
    }
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.call.method)
            .field(
                "endpoint",
                &crate::redact::RedactedEndpoint(self.call.endpoint()),
            )
            .field("headers", &crate::redact::Redacted(&self.call.headers))
            .field("timeout", &self.call.timeout)
            .field("deadline", &self.call.deadline)
            .finish_non_exhaustive()
    }
}

/// A streaming request being prepared; `.await` it to get a [`StreamResponse`].
///
/// From [`RequestBuilder::stream`] or [`HttpClient::stream_post`].
#[must_use = "a request does nothing until it is awaited"]
pub struct StreamRequestBuilder {
    request: RequestBuilder,
    restart: bool,
}

impl StreamRequestBuilder {
    /// Overrides the time allowed until the response headers arrive.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request = self.request.timeout(timeout);
        self
    }

    /// Bounds the whole stream, from sending the request to its last line; see
    /// [`RequestBuilder::deadline`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.request = self.request.deadline(deadline);
        self
    }

    /// Marks this call as safe to repeat or not; see [`RequestBuilder::idempotent`].
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.request = self.request.idempotent(idempotent);
        self
    }

    /// Declares the tokens this call will consume; see [`RequestBuilder::cost`].
    pub fn cost(mut self, tokens: u32) -> Self {
        self.request = self.request.cost(tokens);
        self
    }

    /// Names the model this call asks for; see [`RequestBuilder::model`].
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.request = self.request.model(model);
        self
    }

    /// Sends the request under `id` instead of a fresh one.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request = self.request.request_id(id);
        self
    }

    /// Reads this stream in `dialect` instead of the client's
    /// ([`StreamOptions::dialect`](crate::read_ahead::StreamOptions)): say,
    /// [`OpenAiResponses`](crate::provider::dialect::OpenAiResponses) for
    /// one call to `/responses`.
    pub fn dialect(mut self, dialect: impl Dialect) -> Self {
        self.options().dialect = Some(StreamDialect::new(dialect));
        self
    }

    /// Bounds the wait for this stream's first content, from each
    /// attempt's request, instead of the client's `first_token_timeout`.
    pub fn first_token_timeout(mut self, limit: Duration) -> Self {
        self.options().first_token_timeout = Some(limit);
        self
    }

    fn options(&mut self) -> &mut StreamOptions {
        let extras = self.request.call.extras.get_or_insert_with(Box::default);
        extras.stream.get_or_insert_with(StreamOptions::default)
    }

    /// When the stream breaks after content (cut, stalled, an error inside
    /// it, ended without its dialect's end marker) and the call is safe to
    /// repeat, sends it again from the beginning on the same provider after
    /// the retry backoff (at most `max_retries` times, never past the call's
    /// deadline); the read that met the break returns an error for which
    /// [`Error::is_stream_restarted`] is true, and the next reads are the new
    /// answer's (see
    /// [restarted streams](crate::client::StreamResponse#restarted-streams)).
    /// Off by default. For another provider instead, see
    /// [`GroupStreamRequest::restart_on_cut`](crate::failover::GroupStreamRequest::restart_on_cut).
    pub fn restart_on_cut(mut self) -> Self {
        self.restart = true;
        self
    }

    /// Sends the request; the same as `.await`.
    pub async fn send(self) -> Result<StreamResponse, Error> {
        let RequestBuilder { client, call } = self.request;
        if !self.restart {
            return send_streaming(client, call).await;
        }
        super::stream::send_restartable(client, call).await
    }
}

impl IntoFuture for StreamRequestBuilder {
    type Output = Result<StreamResponse, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for StreamRequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StreamRequestBuilder")
            .field(&self.request)
            .finish()
    }
}
