//! What a successful call returns: a buffered [`Response`], or a
//! [`StreamResponse`] read line by line.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::BodyError;
use crate::RequestId;
use crate::error::{Error, ErrorKind};
use crate::pool::PoolSlot;

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
            .field("headers", &super::config::Redacted(&self.headers))
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
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
    idle_timeout: Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    max_line_bytes: usize,
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
            buffer: BytesMut::new(),
            scanned: 0,
            idle_timeout,
            idle: None,
            max_line_bytes,
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

    fn take_line(&mut self, end: usize) -> Result<Option<String>, Error> {
        let mut line = self.buffer.split_to(end + 1);
        self.scanned = 0;
        line.truncate(end);
        if line.last() == Some(&b'\r') {
            line.truncate(end - 1);
        }
        if line.len() > self.max_line_bytes {
            return Err(self.line_too_long());
        }
        String::from_utf8(line.to_vec())
            .map(Some)
            .map_err(|e| self.error(ErrorKind::Body).with_source(e))
    }

    fn line_too_long(&self) -> Error {
        self.error(ErrorKind::Body)
            .with_source(BodyError::msg(format!(
                "a line is longer than max_line_bytes ({})",
                self.max_line_bytes
            )))
    }

    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<String>, Error>> {
        loop {
            // A complete line already buffered?
            if let Some(pos) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + pos;
                match self.take_line(end) {
                    Ok(Some(line)) if line.is_empty() => continue,
                    other => return Poll::Ready(other),
                }
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > self.max_line_bytes {
                self.body = None;
                return Poll::Ready(Err(self.line_too_long()));
            }
            let Some(body) = self.body.as_mut() else {
                // End of body: whatever is left is the last line.
                if self.buffer.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                let rest = self.buffer.split();
                self.scanned = 0;
                let text = String::from_utf8(rest.to_vec())
                    .map_err(|e| self.error(ErrorKind::Body).with_source(e));
                return Poll::Ready(match text {
                    Ok(line) if line.trim().is_empty() => Ok(None),
                    Ok(line) => Ok(Some(line.trim_end_matches('\r').to_owned())),
                    Err(e) => Err(e),
                });
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle = None;
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buffer.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    self.buffer.clear();
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
                    self.buffer.clear();
                    return Poll::Ready(Err(self.error(ErrorKind::Timeout).with_message(format!(
                        "stream sent no data for {:?} (stream_idle_timeout)",
                        timeout
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
            .field("headers", &super::config::Redacted(&self.headers))
            .finish_non_exhaustive()
    }
}
