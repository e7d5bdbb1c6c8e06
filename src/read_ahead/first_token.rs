//! [`FirstToken`]: the first content as a stream dialect tells it.

use std::fmt;

use super::{Arrival, FirstContent, FirstLine};
use crate::framing::Event;
use crate::framing::lines::Lines;
use crate::framing::sse::EventParser;
use crate::provider::dialect::{StreamDialect, StreamReport};

/// The longest line or event the reader keeps while it looks for the first
/// token: the layer's `max_bytes` bounds what it reads in all.
const MAX_LINE: usize = 1 << 30;

/// The first *generated* token of a streamed LLM answer, as a
/// [`StreamDialect`] tells it: not a keep-alive, a role-only chunk or
/// `response.created`. An error the provider sends inside the stream before
/// it fails the attempt as the status it stands for ([`Arrival::Error`]); a
/// body that ends before it without the dialect's end marker fails it too
/// ([`Arrival::Cut`]).
///
/// The dialect is the request's (a [`StreamDialect`] in its extensions, as
/// [`HttpClient`](crate::HttpClient) puts it), else the one given to
/// [`new`](Self::new); without either, the first line ([`FirstLine`]). An
/// answer of content type `text/event-stream` is read as Server-Sent Events,
/// any other as NDJSON lines.
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::provider::dialect::{AnthropicMessages, StreamDialect};
/// use stache_resilience::read_ahead::{FirstToken, ReadAheadLayer};
///
/// let layer = ReadAheadLayer::new(Duration::from_secs(30))
///     .until(FirstToken::new(StreamDialect::new(AnthropicMessages)))
///     .first_content_timeout(Duration::from_secs(20));
/// # let _ = layer;
/// ```
#[derive(Default)]
pub struct FirstToken {
    default: Option<StreamDialect>,
    reading: Option<Box<Reading>>,
    line: FirstLine,
}

/// One answer being read through its dialect.
struct Reading {
    dialect: StreamDialect,
    lines: Lines,
    /// `None` for NDJSON.
    events: Option<EventParser>,
    report: StreamReport,
    arrival: Option<Arrival>,
}

impl FirstToken {
    /// Reads by `dialect` the answers whose requests name none.
    pub fn new(dialect: StreamDialect) -> Self {
        FirstToken {
            default: Some(dialect),
            reading: None,
            line: FirstLine::default(),
        }
    }
}

impl Clone for FirstToken {
    /// A reader for another answer: the default dialect, nothing read.
    fn clone(&self) -> Self {
        FirstToken {
            default: self.default.clone(),
            reading: None,
            line: FirstLine::default(),
        }
    }
}

impl fmt::Debug for FirstToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstToken")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl Reading {
    /// Reads the complete lines buffered; whether the wait is over.
    fn read_lines(&mut self) -> bool {
        while let Some(line) = self.lines.next_line() {
            let Ok(line) = line else {
                // A line the reader above will refuse: let it.
                self.arrival = Some(Arrival::Content);
                return true;
            };
            if self.read_line(&line) {
                return true;
            }
        }
        false
    }

    fn read_line(&mut self, line: &str) -> bool {
        let event = match &mut self.events {
            Some(parser) => match parser.line(line) {
                Ok(Some(event)) => event,
                Ok(None) => return false,
                Err(_) => {
                    self.arrival = Some(Arrival::Content);
                    return true;
                }
            },
            None if line.trim().is_empty() => return false,
            None => Event::new("", line),
        };
        let said = self.dialect.read(&event, &mut self.report);
        self.arrival = match said.error {
            Some(error) => Some(Arrival::Error(error)),
            // A whole answer with no content (an empty completion) is an
            // answer too.
            None if said.content || said.end => Some(Arrival::Content),
            None => return false,
        };
        true
    }
}

impl FirstContent for FirstToken {
    fn prepare(&mut self, request: &http::Extensions) {
        let dialect = request.get::<StreamDialect>().or(self.default.as_ref());
        self.reading = dialect.map(|dialect| {
            Box::new(Reading {
                dialect: dialect.clone(),
                lines: Lines::new(MAX_LINE),
                events: None,
                report: StreamReport::default(),
                arrival: None,
            })
        });
    }

    fn head(&mut self, response: &http::response::Parts) {
        if let Some(reading) = &mut self.reading {
            if crate::framing::is_event_stream(&response.headers) {
                reading.lines.set_event_stream();
                reading.events = Some(EventParser::new(MAX_LINE));
            }
        }
    }

    fn arrived(&mut self, chunk: &[u8]) -> bool {
        let Some(reading) = &mut self.reading else {
            return self.line.arrived(chunk);
        };
        reading.lines.push(chunk);
        reading.read_lines()
    }

    fn arrival(&mut self, ended: bool) -> Arrival {
        let Some(reading) = &mut self.reading else {
            return Arrival::Content;
        };
        if let Some(arrival) = reading.arrival.take() {
            return arrival;
        }
        if !ended {
            // `max_bytes` read without content: the reader above judges.
            return Arrival::Content;
        }
        // The body's last line may lack its newline; an event stream's last
        // event, its blank line (dropped, as the standard says).
        if let Some(Ok(line)) = reading.lines.finish() {
            if reading.read_line(&line) {
                if let Some(arrival) = reading.arrival.take() {
                    return arrival;
                }
            }
        }
        Arrival::Cut
    }
}
