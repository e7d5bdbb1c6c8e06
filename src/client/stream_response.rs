//! [`StreamResponse`]: a streamed answer read line by line, bounded in time
//! (idle timeout, the call's deadline) and in size (per line, per stream).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use http_body::Body;

use super::call::CallDeadline;
use super::http_client::StackBody;
use super::lines::{LineError, Lines};
use super::sse::{Event, EventParser};
use crate::error::{BodyError, Elapsed, Error, ErrorKind};
use crate::pool::PoolSlot;
use crate::redact::Redacted;
use crate::request_id::RequestId;

/// A 2xx response whose body is read as it arrives, one NDJSON line at a time.
///
/// Returned once the headers and the first line have arrived; retries cover
/// only the part before that, so no line is ever delivered twice. Each wait for
/// data is bounded by the client's `stream_idle_timeout`, the whole stream by the
/// call's deadline (`total_timeout` or
/// [`deadline`](crate::client::StreamRequestBuilder::deadline)), each line by
/// `max_line_bytes` and the stream by `max_stream_bytes`. After an error every
/// later read returns an error of the same kind, never a clean end. The
/// connection slot is held until this value is dropped.
///
/// Read with [`next_line`](Self::next_line), or as a
/// [`Stream`](futures_core::Stream) of lines; or, for Server-Sent Events
/// (`text/event-stream`, as OpenAI and Anthropic stream completions), with
/// [`next_event`](Self::next_event), or as a stream of events with
/// [`events`](Self::events).
///
/// ```no_run
/// # async fn run(client: stache_resilience::HttpClient) -> Result<(), stache_resilience::Error> {
/// let body = serde_json::json!({ "model": "gpt-4o-mini", "stream": true, "messages": [] });
/// let mut stream = client.post("/v1/chat/completions", &body).stream().await?;
/// while let Some(event) = stream.next_event().await? {
///     if event.data() == "[DONE]" {
///         break;
///     }
///     println!("{}", event.data());
/// }
/// # Ok(()) }
/// ```
pub struct StreamResponse {
    status: StatusCode,
    headers: HeaderMap,
    request_id: RequestId,
    body: Option<StackBody>,
    lines: Lines,
    /// The first line, read before the stream was handed to the caller (more
    /// than one once an event stream split it at its `\r`s).
    first: VecDeque<String>,
    /// The event parser, from the first call to `next_event` on.
    events: Option<EventParser>,
    limits: StreamLimits,
    received: u64,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
    failed: Option<Failure>,
    _slot: Option<PoolSlot>,
    provider: Option<std::sync::Arc<str>>,
}

/// The bounds of one stream.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamLimits {
    pub(super) idle_timeout: Duration,
    pub(super) max_line_bytes: usize,
    pub(super) max_stream_bytes: u64,
}

/// How a stream failed, kept to answer every later read.
#[derive(Debug, Clone)]
struct Failure {
    kind: ErrorKind,
    message: Arc<str>,
    deadline: Option<Elapsed>,
}

impl StreamResponse {
    pub(super) fn new(
        response: http::Response<StackBody>,
        request_id: RequestId,
        limits: StreamLimits,
        deadline: Option<&CallDeadline>,
    ) -> Self {
        let (mut parts, body) = response.into_parts();
        let slot = parts.extensions.remove::<PoolSlot>();
        let mut lines = Lines::new(limits.max_line_bytes);
        let event_stream = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
            });
        if event_stream {
            lines.set_event_stream();
        }
        StreamResponse {
            status: parts.status,
            headers: parts.headers,
            request_id,
            body: Some(body),
            lines,
            first: VecDeque::new(),
            events: None,
            limits,
            received: 0,
            idle: None,
            deadline: deadline.map(|d| (Box::pin(tokio::time::sleep_until(d.at)), d.total)),
            failed: None,
            _slot: slot,
            provider: None,
        }
    }

    /// Tags the stream with the failover group member that answered.
    pub(crate) fn with_provider(mut self, provider: std::sync::Arc<str>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The provider that answered, when the call went through a
    /// [`ProviderGroup`](crate::failover::ProviderGroup).
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
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
    /// A timeout if no data came for `stream_idle_timeout`, or the call's
    /// deadline passed ([`Error::is_deadline`]); a body error if a line grows
    /// past `max_line_bytes`, the stream past `max_stream_bytes`, a line is not
    /// UTF-8, or the connection breaks. Once a read has failed, every later read
    /// fails the same way.
    pub async fn next_line(&mut self) -> Result<Option<String>, Error> {
        std::future::poll_fn(|cx| self.poll_line(cx)).await
    }

    /// The next Server-Sent Event, or `None` at the end of the stream.
    ///
    /// The body is read as the WHATWG standard says: lines end at `\r\n`,
    /// `\n` or `\r`; `event:`, `data:` (several lines joined by `\n`), `id:`
    /// and `retry:` fields; comments (`:` lines) and unknown fields ignored;
    /// an empty line ends an event, and one without data is skipped; an event
    /// cut off by the end of the body is dropped. A stream whose content type
    /// is `text/event-stream` is read this way from its first byte; another is
    /// switched to it by the first call (do not mix `next_line` and
    /// `next_event` on one stream).
    ///
    /// # Errors
    ///
    /// As [`next_line`](Self::next_line), with `max_line_bytes` bounding each
    /// line and each event's data.
    pub async fn next_event(&mut self) -> Result<Option<Event>, Error> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// This stream as a [`Stream`](futures_core::Stream) of Server-Sent
    /// Events; see [`next_event`](Self::next_event).
    pub fn events(self) -> EventStream {
        EventStream { response: self }
    }

    /// Takes the first line, for the caller to get from `next_line`: a line
    /// the server sent wrong (too long, not UTF-8) is then the call's error.
    pub(super) async fn prime(&mut self) -> Result<(), Error> {
        let line = std::future::poll_fn(|cx| self.poll_raw(cx)).await?;
        self.first.extend(line);
        Ok(())
    }

    fn error(&self, failure: &Failure) -> Error {
        let mut error = Error::new(failure.kind)
            .with_message(failure.message.to_string())
            .with_request_id(self.request_id.clone());
        if let Some(elapsed) = failure.deadline {
            error = error.with_source(elapsed);
        }
        error
    }

    /// Ends the stream with `failure`: nothing after it can be trusted. The
    /// first error carries `source`; later reads repeat the message.
    fn fail(&mut self, failure: Failure, source: Option<BodyError>) -> Error {
        self.body = None;
        self.lines = Lines::new(0);
        self.idle = None;
        self.deadline = None;
        let mut error = self.error(&failure);
        if let Some(source) = source {
            error = error.with_source(source);
        }
        self.failed = Some(failure);
        error
    }

    fn fail_with(&mut self, kind: ErrorKind, message: String) -> Error {
        let failure = Failure {
            kind,
            message: message.into(),
            deadline: None,
        };
        self.fail(failure, None)
    }

    fn line_error(&mut self, error: LineError) -> Error {
        match error {
            LineError::TooLong { max } => self.fail_with(
                ErrorKind::Body,
                format!("bad response body: a line is longer than max_line_bytes ({max})"),
            ),
            LineError::Utf8(e) => self.fail_with(
                ErrorKind::Body,
                format!("bad response body: a line is not UTF-8: {e}"),
            ),
        }
    }

    /// The next line with content (an event stream's empty lines skipped).
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<String>, Error>> {
        loop {
            match ready!(self.poll_raw(cx)) {
                Ok(Some(line)) if line.is_empty() => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Event>, Error>> {
        if !self.lines.is_event_stream() {
            // Read as lines so far: the line kept ahead may hold several lines
            // of an event stream that ends its lines with a bare `\r`.
            self.lines.set_event_stream();
            let first: Vec<String> = self.first.drain(..).collect();
            for line in first {
                self.first.extend(line.split('\r').map(str::to_owned));
            }
        }
        let max = self.limits.max_line_bytes;
        loop {
            let line = match ready!(self.poll_raw(cx)) {
                Ok(Some(line)) => line,
                other => return Poll::Ready(other.map(|_| None)),
            };
            let parser = self.events.get_or_insert_with(|| EventParser::new(max));
            match parser.line(&line) {
                Ok(Some(event)) => return Poll::Ready(Ok(Some(event))),
                Ok(None) => {}
                Err(too_long) => {
                    return Poll::Ready(Err(self.fail_with(
                        ErrorKind::Body,
                        format!(
                            "bad response body: an event is longer than max_line_bytes ({})",
                            too_long.max
                        ),
                    )));
                }
            }
        }
    }

    /// The next line as the reader splits it (an event stream's empty lines
    /// included), reading the body as needed, under every bound.
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<String>, Error>> {
        if let Some(failure) = &self.failed {
            let mut failure = failure.clone();
            failure.message = format!("stream already failed: {}", failure.message).into();
            return Poll::Ready(Err(self.error(&failure)));
        }
        if let Some(line) = self.first.pop_front() {
            return Poll::Ready(Ok(Some(line)));
        }
        loop {
            match self.lines.next_line() {
                Some(Ok(line)) => return Poll::Ready(Ok(Some(line))),
                Some(Err(e)) => return Poll::Ready(Err(self.line_error(e))),
                None => {}
            }
            if let Some((sleep, total)) = &mut self.deadline {
                if sleep.as_mut().poll(cx).is_ready() {
                    let total = *total;
                    let failure = Failure {
                        kind: ErrorKind::Timeout,
                        message: format!("deadline of {total:?} exceeded while streaming").into(),
                        deadline: Some(Elapsed::deadline(total)),
                    };
                    return Poll::Ready(Err(self.fail(failure, None)));
                }
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
                        self.received = self.received.saturating_add(data.len() as u64);
                        if self.received > self.limits.max_stream_bytes {
                            let max = self.limits.max_stream_bytes;
                            return Poll::Ready(Err(self.fail_with(
                                ErrorKind::Body,
                                format!("bad response body: the stream is longer than max_stream_bytes ({max})"),
                            )));
                        }
                        self.lines.push(data);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("bad response body: the stream broke: {e}");
                    let failure = Failure {
                        kind: ErrorKind::Body,
                        message: message.into(),
                        deadline: None,
                    };
                    return Poll::Ready(Err(self.fail(failure, Some(BodyError::new(e)))));
                }
                Poll::Ready(None) => self.body = None,
                Poll::Pending => {
                    let timeout = self.limits.idle_timeout;
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(idle.as_mut().poll(cx));
                    return Poll::Ready(Err(self.fail_with(
                        ErrorKind::Timeout,
                        format!("stream sent no data for {timeout:?} (stream_idle_timeout)"),
                    )));
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

/// A [`StreamResponse`] read as a [`Stream`](futures_core::Stream) of
/// Server-Sent Events; from [`StreamResponse::events`].
pub struct EventStream {
    response: StreamResponse,
}

impl EventStream {
    /// The response the events are read from (its status, headers, request ID).
    pub fn response(&self) -> &StreamResponse {
        &self.response
    }
}

impl futures_core::Stream for EventStream {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .response
            .poll_event(cx)
            .map(Result::transpose)
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventStream").field(&self.response).finish()
    }
}

impl fmt::Debug for StreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResponse")
            .field("status", &self.status)
            .field("request_id", &self.request_id.as_str())
            .field("headers", &Redacted(&self.headers))
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}
