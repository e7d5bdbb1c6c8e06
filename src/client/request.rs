//! Building a call: [`HttpClient`]'s request methods, [`RequestBuilder`] and
//! [`StreamRequestBuilder`].

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Serialize;

use super::call::{Call, json_body};
use super::future::Pending;
use super::http_client::HttpClient;
use super::response::Response;
use super::stream::send_streaming;
use super::stream_response::StreamResponse;
use crate::error::Error;
use crate::request_id::RequestId;

impl HttpClient {
    /// A `GET` of `endpoint` (appended to the base URL).
    pub fn get<'a>(&'a self, endpoint: &'a str) -> RequestBuilder<'a> {
        RequestBuilder::new(Call::new(self, Method::GET, endpoint, Ok(None)))
    }

    /// A `POST` of `body`, serialized as JSON, to `endpoint`.
    pub fn post<'a, T: Serialize + ?Sized>(
        &'a self,
        endpoint: &'a str,
        body: &T,
    ) -> RequestBuilder<'a> {
        RequestBuilder::new(Call::new(self, Method::POST, endpoint, json_body(body)))
    }

    /// A request with any method; add a body with [`RequestBuilder::json`].
    pub fn request<'a>(&'a self, method: Method, endpoint: &'a str) -> RequestBuilder<'a> {
        RequestBuilder::new(Call::new(self, method, endpoint, Ok(None)))
    }

    /// A `POST` whose response is read as it arrives, line by line (NDJSON).
    pub fn stream_post<'a, T: Serialize + ?Sized>(
        &'a self,
        endpoint: &'a str,
        body: &T,
    ) -> StreamRequestBuilder<'a> {
        StreamRequestBuilder {
            request: RequestBuilder::new(Call::new(self, Method::POST, endpoint, json_body(body))),
        }
    }
}

/// A request being prepared; `.await` it to send it.
///
/// Built by [`HttpClient::get`], [`HttpClient::post`] and
/// [`HttpClient::request`].
#[must_use = "a request does nothing until it is awaited"]
pub struct RequestBuilder<'a> {
    call: Call<'a>,
}

impl<'a> RequestBuilder<'a> {
    fn new(call: Call<'a>) -> Self {
        RequestBuilder { call }
    }

    /// Overrides the provider's per-attempt timeout for this request.
    ///
    /// Zero, or more than a year, fails the call with a request error.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.call.timeout = Some(timeout);
        self
    }

    /// Bounds this call as a whole — every attempt, every wait between them —
    /// overriding the provider's [`total_timeout`](crate::HttpClientConfig::total_timeout).
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

    /// Sets the JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.call.body = json_body(body);
        self
    }

    /// Adds a header for this request only.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.call.headers.insert(name, value);
        self
    }

    /// Sends the request under `id` instead of a fresh one — to carry an incoming
    /// request's ID on to the calls it makes.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.call.request_id = Some(id);
        self
    }

    /// Sends the request; the same as `.await`.
    pub fn send(self) -> Pending<'a> {
        Pending::new(self.call)
    }
}

impl<'a> IntoFuture for RequestBuilder<'a> {
    type Output = Result<Response, Error>;
    type IntoFuture = Pending<'a>;

    fn into_future(self) -> Self::IntoFuture {
        self.send()
    }
}

impl fmt::Debug for RequestBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.call.method)
            .field("endpoint", &self.call.endpoint)
            .field("timeout", &self.call.timeout)
            .field("deadline", &self.call.deadline)
            .finish_non_exhaustive()
    }
}

/// A streaming request being prepared; `.await` it to get a [`StreamResponse`].
#[must_use = "a request does nothing until it is awaited"]
pub struct StreamRequestBuilder<'a> {
    request: RequestBuilder<'a>,
}

impl<'a> StreamRequestBuilder<'a> {
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

    /// Sends the request under `id` instead of a fresh one.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request = self.request.request_id(id);
        self
    }

    /// Sends the request; the same as `.await`.
    pub async fn send(self) -> Result<StreamResponse, Error> {
        send_streaming(self.request.call).await
    }
}

impl<'a> IntoFuture for StreamRequestBuilder<'a> {
    type Output = Result<StreamResponse, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for StreamRequestBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StreamRequestBuilder")
            .field(&self.request)
            .finish()
    }
}
