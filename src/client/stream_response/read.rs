//! Reading a [`StreamResponse`]: the body under its bounds, lines, events, and
//! what the stream's dialect says of each.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::Body;

use super::{Failure, StreamResponse};
use crate::error::{BodyError, Elapsed, Error, ErrorKind, StreamCut};
use crate::framing::Event;
use crate::framing::lines::{LineError, Lines};
use crate::framing::sse::EventParser;
use crate::provider::ProviderError;

impl StreamResponse {
    fn error(&self, failure: &Failure) -> Error {
        let mut error = Error::new(failure.kind)
            .with_message(failure.message.to_string())
            .with_request_id(self.request_id.clone())
            .with_cut(failure.cut);
        if let Some(elapsed) = failure.deadline {
            error = error.with_source(elapsed);
        }
        if let Some(named) = &failure.named {
            // Stands for its status, as before content it would have.
            error = error
                .with_status(named.kind().status())
                .with_provider_error(named.clone());
        }
        error
    }

    /// How much of the stream had arrived.
    fn cut(&self) -> StreamCut {
        let events = self.dialect.is_some().then(|| self.report.content_events());
        StreamCut::new(events, self.received)
    }

    /// Ends the stream with `failure`: nothing after it can be trusted. The
    /// first error carries `source`; later reads repeat the message.
    pub(super) fn fail(&mut self, failure: Failure, source: Option<BodyError>) -> Error {
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

    fn failure(&self, kind: ErrorKind, message: String) -> Failure {
        let cut = self.cut();
        Failure {
            kind,
            message: format!("{message} ({cut})").into(),
            deadline: None,
            named: None,
            cut,
        }
    }

    fn fail_with(&mut self, kind: ErrorKind, message: String) -> Error {
        let failure = self.failure(kind, message);
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

    /// Ends the stream with the error the provider sent inside it.
    fn fail_in_band(&mut self, named: ProviderError) -> Error {
        let mut failure = self.failure(
            ErrorKind::Status,
            format!("the provider sent an error inside its stream: {named}"),
        );
        failure.named = Some(named);
        self.fail(failure, None)
    }

    /// The body ended: cleanly, unless the dialect's end marker never came.
    fn at_end(&mut self) -> Result<(), Error> {
        if self.report.is_complete() {
            if let (Some(usage), Some(tokens)) = (self.report.usage(), self.tokens.take()) {
                tokens.settle(usage.total());
            }
        }
        if self.dialect.is_none() || self.report.is_complete() {
            return Ok(());
        }
        let name = self
            .dialect
            .as_ref()
            .map(|d| format!("{d:?}"))
            .unwrap_or_default();
        Err(self.fail_with(
            ErrorKind::Body,
            format!("the stream ended without its end marker ({name}): the answer is truncated"),
        ))
    }

    /// What the dialect says of `event`: an in-band error ends the stream,
    /// content resets the wait for the next.
    fn read_event(&mut self, event: &Event) -> Result<(), Error> {
        let Some(dialect) = &self.dialect else {
            return Ok(());
        };
        let said = dialect.read(event, &mut self.report);
        if let Some(named) = said.error {
            return Err(self.fail_in_band(named));
        }
        if said.content {
            self.idle = None;
        }
        Ok(())
    }

    /// The next line with content (an event stream's empty lines skipped).
    pub(super) fn poll_line(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<String>, Error>> {
        loop {
            match ready!(self.poll_raw(cx)) {
                Ok(Some(line)) if line.is_empty() => continue,
                Ok(Some(line)) => {
                    // A dialect reads an NDJSON stream's lines; an event
                    // stream's, through `next_event`.
                    if !self.lines.is_event_stream() && self.dialect.is_some() {
                        if line.trim().is_empty() {
                            continue;
                        }
                        self.read_event(&Event::new("", line.as_str()))?;
                    }
                    return Poll::Ready(Ok(Some(line)));
                }
                Ok(None) => return Poll::Ready(self.at_end().map(|()| None)),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    pub(super) fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Event>, Error>> {
        if self.dialect.is_some() && !self.lines.is_event_stream() && self.events.is_none() {
            // NDJSON in a dialect: each line is an event.
            return match ready!(self.poll_line(cx)) {
                Ok(Some(line)) => Poll::Ready(Ok(Some(Event::new("", line)))),
                other => Poll::Ready(other.map(|_| None)),
            };
        }
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
                Ok(None) => return Poll::Ready(self.at_end().map(|()| None)),
                Err(e) => return Poll::Ready(Err(e)),
            };
            let parser = self.events.get_or_insert_with(|| EventParser::new(max));
            match parser.line_owned(line) {
                Ok(Some(event)) => {
                    self.read_event(&event)?;
                    return Poll::Ready(Ok(Some(event)));
                }
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
    pub(super) fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<String>, Error>> {
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
                    let mut failure = self.failure(
                        ErrorKind::Timeout,
                        format!("deadline of {total:?} exceeded while streaming"),
                    );
                    failure.deadline = Some(Elapsed::deadline(total));
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
                    // With a dialect, only content resets the wait: a stream
                    // of keep-alives is stalled all the same.
                    if self.dialect.is_none() {
                        self.idle = None;
                    }
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
                    let failure = self.failure(
                        ErrorKind::Body,
                        format!("bad response body: the stream broke: {e}"),
                    );
                    return Poll::Ready(Err(self.fail(failure, Some(BodyError::new(e)))));
                }
                Poll::Ready(None) => self.body = None,
                Poll::Pending => {
                    let timeout = self.limits.idle_timeout;
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(idle.as_mut().poll(cx));
                    let what = if self.dialect.is_some() {
                        "content"
                    } else {
                        "data"
                    };
                    return Poll::Ready(Err(self.fail_with(
                        ErrorKind::Timeout,
                        format!("stream sent no {what} for {timeout:?} (stream_idle_timeout)"),
                    )));
                }
            }
        }
    }
}
