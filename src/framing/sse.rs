//! Server-Sent Events: [`Event`], and the parser that builds events from the
//! lines of a `text/event-stream` body, as the WHATWG HTML standard
//! ("Interpreting an event stream") says.
//!
//! Written here rather than taken from a crate: the parsers on crates.io
//! (`eventsource-stream`, `sse-stream`) read the bytes themselves, with an
//! unbounded buffer per line and per event, while a [`StreamResponse`] already
//! reads its body under the idle timeout, the deadline and the byte limits. This
//! parser is the part of the standard that is left: fields to events, over the
//! bounded line reader.
//!
//! [`StreamResponse`]: crate::client::StreamResponse

use std::fmt;
use std::time::Duration;

/// One Server-Sent Event, from [`StreamResponse::next_event`](crate::client::StreamResponse::next_event).
#[derive(Clone)]
pub struct Event {
    event: String,
    /// The data, from `data_start` on (a line's buffer kept whole, its
    /// `data: ` not cut off: no copy).
    data: String,
    data_start: usize,
    id: Option<String>,
    retry: Option<Duration>,
}

impl Event {
    /// An event of type `event` (`""` or `"message"` for an unnamed one) with
    /// `data`: for a [`Dialect`](crate::provider::dialect::Dialect)'s tests,
    /// or a line of an NDJSON stream seen as an event.
    pub fn new(event: impl Into<String>, data: impl Into<String>) -> Self {
        let mut event = event.into();
        if event == "message" {
            event.clear();
        }
        Event {
            event,
            data: data.into(),
            data_start: 0,
            id: None,
            retry: None,
        }
    }

    /// The event's type: its `event:` field, or `"message"` when it has none.
    pub fn event(&self) -> &str {
        if self.event.is_empty() {
            "message"
        } else {
            &self.event
        }
    }

    /// The event's data: its `data:` lines joined by `\n`.
    pub fn data(&self) -> &str {
        self.data.get(self.data_start..).unwrap_or_default()
    }

    /// The last event ID the stream set (an `id:` field of this event or an
    /// earlier one), if any; an empty `id:` clears it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The reconnection time the stream last asked for (a `retry:` field of
    /// this event or an earlier one, even one that carried no data), if any; a
    /// field that is not all digits is ignored.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("event", &self.event())
            .field("data", &self.data())
            .field("id", &self.id)
            .field("retry", &self.retry)
            .finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
            && self.data() == other.data()
            && self.id == other.id
            && self.retry == other.retry
    }
}

impl Eq for Event {}

/// An event whose data grew past the limit before it ended.
#[derive(Debug)]
pub(crate) struct EventTooLong {
    pub(crate) max: usize,
}

/// Lines in, events out.
#[derive(Debug, Default)]
pub(crate) struct EventParser {
    event: String,
    data: String,
    /// Where the data starts in `data`.
    data_start: usize,
    /// Whether a `data:` field came since the last event.
    has_data: bool,
    retry: Option<Duration>,
    last_id: Option<String>,
    /// Whether the first line was seen (a byte-order mark is dropped from it).
    started: bool,
    /// The most bytes one event's data may hold.
    max: usize,
}

impl EventParser {
    pub(crate) fn new(max: usize) -> Self {
        EventParser {
            max,
            ..EventParser::default()
        }
    }

    /// As [`line`](Self::line), keeping the line's buffer as the event's
    /// data when it is the event's first `data:` line (the usual event has
    /// one): no copy of the data, no second allocation.
    pub(crate) fn line_owned(&mut self, line: String) -> Result<Option<Event>, EventTooLong> {
        if self.started && !self.has_data && line.starts_with("data:") {
            let prefix = if line.as_bytes().get(5) == Some(&b' ') {
                6
            } else {
                5
            };
            if line.len() - prefix + self.event.len() < self.max {
                self.data = line;
                self.data_start = prefix;
                self.has_data = true;
                return Ok(None);
            }
        }
        self.line(&line)
    }

    /// Takes one line (without its end); an empty line ends the event.
    pub(crate) fn line(&mut self, line: &str) -> Result<Option<Event>, EventTooLong> {
        let line = if self.started {
            line
        } else {
            self.started = true;
            line.strip_prefix('\u{feff}').unwrap_or(line)
        };
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                if self.data.len() - self.data_start + value.len() + self.event.len() + 1 > self.max
                {
                    self.reset();
                    return Err(EventTooLong { max: self.max });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.last_id = (!value.is_empty()).then(|| value.to_owned());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Too many digits for a u64 is a wait too long to mean anything:
                // ignored, like any other field that is not a number.
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// The event gathered so far, if it has data; clears the event either way.
    fn dispatch(&mut self) -> Option<Event> {
        if !self.has_data {
            self.reset();
            return None;
        }
        let event = Event {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data),
            data_start: std::mem::take(&mut self.data_start),
            id: self.last_id.clone(),
            retry: self.retry,
        };
        self.has_data = false;
        Some(event)
    }

    fn reset(&mut self) {
        self.event.clear();
        self.data.clear();
        self.data_start = 0;
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::lines::Lines;
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` to the line reader in event-stream mode, then the lines
    /// to the parser; the events, as (type, data, id).
    fn events(chunks: &[&[u8]]) -> Vec<(String, String, Option<String>)> {
        let mut lines = Lines::new(1024);
        lines.set_event_stream();
        let mut parser = EventParser::new(1024);
        let mut out = Vec::new();
        for chunk in chunks {
            lines.push(*chunk);
            while let Some(line) = lines.next_line() {
                let line = line.expect("a valid line");
                if let Some(e) = parser.line(&line).expect("an event within bounds") {
                    out.push((e.event().to_owned(), e.data().to_owned(), e.id.clone()));
                }
            }
        }
        assert!(lines.finish().is_none());
        out
    }

    fn ev(kind: &str, data: &str, id: Option<&str>) -> (String, String, Option<String>) {
        (kind.to_owned(), data.to_owned(), id.map(str::to_owned))
    }

    #[test]
    fn fields_comments_and_multi_line_data() {
        let stream = b": keep-alive\n\ndata: first\n\nevent: delta\ndata: a\ndata:b\nid: 7\n\n\
                       data\n\nid\ndata: no id\n\nretry: x\nunknown: field\ndata: [DONE]\n\n";
        assert_eq!(
            events(&[stream]),
            [
                ev("message", "first", None),
                ev("delta", "a\nb", Some("7")),
                ev("message", "", Some("7")),
                ev("message", "no id", None),
                ev("message", "[DONE]", None),
            ]
        );
    }

    #[test]
    fn crlf_lf_and_cr_line_ends_and_a_bom() {
        let lf = events(&[b"\xef\xbb\xbfdata: a\n\ndata: b\n\n"]);
        let crlf = events(&[b"\xef\xbb\xbfdata: a\r\n\r\ndata: b\r\n\r\n"]);
        let cr = events(&[b"\xef\xbb\xbfdata: a\r\rdata: b\r\r"]);
        let expected = [ev("message", "a", None), ev("message", "b", None)];
        assert_eq!(lf, expected);
        assert_eq!(crlf, expected);
        assert_eq!(cr, expected);
        // A CRLF cut between its two bytes is one line end, not two.
        assert_eq!(
            events(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            [ev("message", "a\nb", None)]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_fatal() {
        assert_eq!(
            events(&[b"data: a\xffb\n\ndata: c\n\n"]),
            [ev("message", "a\u{fffd}b", None), ev("message", "c", None)]
        );
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_dropped() {
        assert_eq!(
            events(&[b"data: a\n\ndata: b\n"]),
            [ev("message", "a", None)]
        );
    }

    #[test]
    fn retry_is_read_only_from_digits() {
        let mut parser = EventParser::new(64);
        for line in ["retry: 1500", "data: x"] {
            assert!(parser.line(line).unwrap().is_none());
        }
        let event = parser.line("").unwrap().unwrap();
        assert_eq!(event.retry(), Some(Duration::from_millis(1500)));
        // Fields that are not a number leave the last one standing.
        for line in ["retry: 15s", "retry: 99999999999999999999999", "data: y"] {
            assert!(parser.line(line).unwrap().is_none());
        }
        let event = parser.line("").unwrap().unwrap();
        assert_eq!(event.retry(), Some(Duration::from_millis(1500)));
        // A `retry:` in a block without data still counts.
        for line in ["retry: 20", "", "data: z"] {
            assert!(parser.line(line).unwrap().is_none());
        }
        let event = parser.line("").unwrap().unwrap();
        assert_eq!(event.retry(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn an_event_past_the_limit_is_an_error_and_the_next_starts_clean() {
        let mut parser = EventParser::new(8);
        assert!(parser.line("data: 12345").unwrap().is_none());
        assert!(parser.line("data: 6789").is_err());
        assert!(parser.line("").unwrap().is_none());
        assert!(parser.line("data: ok").unwrap().is_none());
        assert_eq!(parser.line("").unwrap().unwrap().data(), "ok");
    }

    proptest! {
        #[test]
        fn any_split_of_a_valid_stream_gives_the_same_events(
            events_in in proptest::collection::vec(
                ("[a-z]{0,6}", proptest::collection::vec("[a-zA-Z0-9{}\":, \\[\\]]{0,12}", 1..4), proptest::option::of("[0-9]{1,3}")),
                0..8,
            ),
            ends in proptest::collection::vec(0usize..3, 64),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut text = String::new();
            let mut expected = Vec::new();
            let mut last_id = None;
            let mut n = 0;
            let mut end = || { n += 1; ["\n", "\r\n", "\r"][ends[n % ends.len()]] };

            for (kind, data, id) in &events_in {
                text.push_str(": a comment");
                text.push_str(end());
                if !kind.is_empty() {
                    text.push_str(&format!("event: {kind}{}", end()));
                }
                for line in data {
                    text.push_str(&format!("data: {line}{}", end()));
                }
                // The empty line that ends an event repeats the line end before
                // it: a `\r` then a `\n` would be one `\r\n`, not two line ends.
                let last = end();
                if let Some(id) = id {
                    last_id = Some(id.clone());
                }
                text.push_str(&format!("id: {}{last}{last}", last_id.clone().unwrap_or_default()));
                let kind = if kind.is_empty() { "message" } else { kind.as_str() };
                expected.push(ev(kind, &data.join("\n"), last_id.as_deref()));
            }
            let bytes = text.into_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&bytes[start..p]);
                start = p;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(events(&chunks), expected);
        }
    }
}
