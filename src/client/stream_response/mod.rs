//! [`StreamResponse`]: a streamed answer read line by line, bounded in time
//! (idle timeout, the call's deadline) and in size (per line, per stream).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::call::CallDeadline;
use super::http_client::StackBody;
use crate::error::{Elapsed, Error, ErrorKind, StreamCut};
use crate::framing::lines::Lines;
use crate::framing::sse::{Event, EventParser};
use crate::pool::PoolSlot;
use crate::provider::ProviderError;
use crate::provider::Usage;
use crate::provider::dialect::{StreamDialect, StreamReport};
use crate::rate_limit::TokenReservation;
use crate::redact::Redacted;
use crate::request_id::RequestId;

mod read;
mod restart;

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
/// # In a dialect
///
/// A stream read in a [dialect](crate::provider::dialect) (the presets
/// choose one; see [`StreamOptions`](crate::read_ahead::StreamOptions)) is
/// handed over at its first generated token rather than its first line;
/// `stream_idle_timeout` bounds the wait between content events, whatever
/// keep-alives come meanwhile; an error the provider sends inside it ends it
/// with an [`Error`] whose [`provider_error`](Error::provider_error) names it;
/// a body that ends before the dialect's end marker ends it with a
/// truncation error, never a clean end; and [`model`](Self::model) and
/// [`usage`](Self::usage) report what the provider said. Every error after
/// the stream was handed over says how much had come
/// ([`Error::stream_cut`]).
///
/// Read an event stream with [`next_event`](Self::next_event), an NDJSON one
/// with [`next_line`](Self::next_line) or `next_event` (each line an event's
/// data).
///
/// # Restarted streams
///
/// A stream from a [`ProviderGroup`](crate::failover::ProviderGroup) call
/// made with [`restart_on_cut`](crate::failover::GroupStreamRequest::restart_on_cut)
/// that breaks after content starts again from the beginning on the next
/// provider (a client's own call made with
/// [`restart_on_cut`](crate::client::StreamRequestBuilder::restart_on_cut),
/// on the same provider after the retry backoff): the read that met the
/// break returns an error for which
/// [`Error::is_stream_restarted`] is true. Discard what was read before it,
/// and read on: the next reads are the new answer's.
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
    dialect: Option<StreamDialect>,
    report: StreamReport,
    /// What restarts the call when the stream breaks, if the caller opted
    /// in (in a mutex only to keep the stream `Sync`: reached through
    /// `&mut self`, never locked).
    restart: Option<std::sync::Mutex<Restart>>,
    restarts: u32,
    /// The tokens the call reserved, settled from the usage at the end.
    tokens: Option<TokenReservation>,
}

/// The next attempt of a call whose stream broke: a new stream from the
/// beginning.
pub(crate) type NextStream = Pin<Box<dyn Future<Output = Result<StreamResponse, Error>> + Send>>;

/// Given how a stream broke, the next attempt of its call, or `None` when
/// the call cannot go on (not safe to repeat, no provider left, no time
/// left). Called at most once per stream.
pub(crate) type Restarter = Box<dyn FnOnce(&Error) -> Option<NextStream> + Send>;

/// A stream's way to restart, and the restart underway.
struct Restart {
    restarter: Option<Restarter>,
    /// The next attempt, and the error that ended this one.
    pending: Option<(NextStream, Error)>,
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
    named: Option<ProviderError>,
    cut: StreamCut,
}

impl StreamResponse {
    pub(super) fn new(
        response: http::Response<StackBody>,
        request_id: RequestId,
        limits: StreamLimits,
        deadline: Option<&CallDeadline>,
        dialect: Option<StreamDialect>,
    ) -> Self {
        let (mut parts, body) = response.into_parts();
        let slot = parts.extensions.remove::<PoolSlot>();
        let tokens = parts.extensions.remove::<TokenReservation>();
        let mut lines = Lines::new(limits.max_line_bytes);
        if crate::framing::is_event_stream(&parts.headers) {
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
            dialect,
            report: StreamReport::default(),
            restart: None,
            restarts: 0,
            tokens,
        }
    }

    /// The model that answered, as the stream's dialect read it (usually
    /// from its first event); `None` without a dialect, or before it said.
    pub fn model(&self) -> Option<&str> {
        self.report.model()
    }

    /// The tokens the answer used, as the stream's dialect read them (most
    /// APIs report them in the last events: read to the end first; OpenAI's
    /// Chat Completions only with `"stream_options": {"include_usage": true}`).
    pub fn usage(&self) -> Option<Usage> {
        self.report.usage()
    }

    /// Whether the dialect's end marker has come: the answer is whole.
    /// Always false without a dialect.
    pub fn is_complete(&self) -> bool {
        self.report.is_complete()
    }

    /// How many events carried content so far (0 without a dialect).
    pub fn content_events(&self) -> u64 {
        self.report.content_events()
    }

    /// How many times the stream was restarted from the beginning (see
    /// [restarted streams](Self#restarted-streams)).
    pub fn restarts(&self) -> u32 {
        self.restarts
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
        std::future::poll_fn(|cx| self.poll_restarting(cx, Self::poll_line)).await
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
        std::future::poll_fn(|cx| self.poll_restarting(cx, Self::poll_event)).await
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
}

impl futures_core::Stream for StreamResponse {
    type Item = Result<String, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.poll_restarting(cx, Self::poll_line)
            .map(Result::transpose)
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
            .poll_restarting(cx, StreamResponse::poll_event)
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
            .field("dialect", &self.dialect)
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}
