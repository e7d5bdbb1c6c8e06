//! What a successful call returns: a buffered [`Response`], or a
//! [`StreamResponse`] read line by line.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::lines::{LineError, Lines};
use crate::error::{BodyError, Error, ErrorKind};
use crate::pool::PoolSlot;
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
        }
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
    pub fn bytes(&self) -> Bytes {
        self.body.clone()
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// A body error ([`Error::is_body`]) if the body is not valid UTF-8.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.to_vec()).map_err(|e| {
            Error::new(ErrorKind::Body)
                .with_source(e)
                .with_request_id(self.request_id.clone())
        })
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// A decode error ([`Error::is_decode`]) naming where the JSON and `T` part.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(ErrorKind::Decode)
                .with_source(e)
                .with_request_id(self.request_id.clone())
        })
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("request_id", &self.request_id.as_str())
            .field("headers", &Redacted(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A 2xx response whose body is read as it arrives, one NDJSON line at a time.
///
/// Returned as soon as the headers arrive; retries cover only the part before
/// that. Each wait for data is bounded by the client's `stream_idle_timeout`, and
/// each line by `max_line_bytes`. The connection slot is held until this value is
/// dropped.
///
/// Read with [`next_line`](Self::next_line), or as a
/// [`Stream`](futures_core::Stream) of lines.
pub struct StreamResponse {
    status: StatusCode,
    headers: HeaderMap,
    request_id: RequestId,
    body: Option<Incoming>,
    lines: Lines,
    idle_timeout: Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    _slot: Option<PoolSlot>,
}

impl StreamResponse {
    pub(crate) fn new(
        response: http::Response<Incoming>,
        request_id: RequestId,
        idle_timeout: Duration,
        max_line_bytes: usize,
    ) -> Self {
        let (mut parts, body) = response.into_parts();
        let slot = parts.extensions.remove::<PoolSlot>();
        StreamResponse {
            status: parts.status,
            headers: parts.headers,
            request_id,
            body: Some(body),
            lines: Lines::new(max_line_bytes),
            idle_timeout,
            idle: None,
            _slot: slot,
        }
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

    /// The next non-empty line (without its `\n` or `\r\n`), or `None` at the
    /// end of the body. A last line without a newline is returned too.
    ///
    /// # Errors
    ///
    /// A timeout if no data came for `stream_idle_timeout`; a body error if a line
    /// grows past `max_line_bytes`, is not UTF-8, or the connection breaks.
    pub async fn next_line(&mut self) -> Result<Option<String>, Error> {
        std::future::poll_fn(|cx| self.poll_line(cx)).await
    }

    fn error(&self, kind: ErrorKind) -> Error {
        Error::new(kind).with_request_id(self.request_id.clone())
    }

    fn line_error(&mut self, error: LineError) -> Error {
        // After an error the stream is over: nothing after it can be trusted.
        self.body = None;
        self.lines = Lines::new(0);
        match error {
            LineError::TooLong { max } => {
                self.error(ErrorKind::Body)
                    .with_source(BodyError::msg(format!(
                        "a line is longer than max_line_bytes ({max})"
                    )))
            }
            LineError::Utf8(e) => self.error(ErrorKind::Body).with_source(e),
        }
    }

    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<String>, Error>> {
        loop {
            match self.lines.next_line() {
                Some(Ok(line)) => return Poll::Ready(Ok(Some(line))),
                Some(Err(e)) => return Poll::Ready(Err(self.line_error(e))),
                None => {}
            }
            let Some(body) = self.body.as_mut() else {
                // End of body: whatever is left is the last line.
                return Poll::Ready(match self.lines.finish() {
                    None => Ok(None),
                    Some(Ok(line)) => Ok(Some(line)),
                    Some(Err(e)) => Err(self.line_error(e)),
                });
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle = None;
                    if let Ok(data) = frame.into_data() {
                        self.lines.push(data);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    self.lines = Lines::new(0);
                    return Poll::Ready(Err(self
                        .error(ErrorKind::Body)
                        .with_source(BodyError::new(e))));
                }
                Poll::Ready(None) => self.body = None,
                Poll::Pending => {
                    let timeout = self.idle_timeout;
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(idle.as_mut().poll(cx));
                    self.body = None;
                    self.lines = Lines::new(0);
                    return Poll::Ready(Err(self.error(ErrorKind::Timeout).with_message(format!(
                        "stream sent no data for {timeout:?} (stream_idle_timeout)"
                    ))));
                }
            }
        }
    }
}

impl futures_core::Stream for StreamResponse {
    type Item = Result<String, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.poll_line(cx).map(Result::transpose)
    }
}

impl fmt::Debug for StreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResponse")
            .field("status", &self.status)
            .field("request_id", &self.request_id.as_str())
            .field("headers", &Redacted(&self.headers))
            .finish_non_exhaustive()
    }
}
