//! Splitting a byte stream into lines, bounded: the NDJSON reader of
//! [`StreamResponse`](crate::client::StreamResponse), kept free of I/O so it can be fed
//! anything in tests.

use bytes::{Buf, BytesMut};

/// Why a line could not be returned.
#[derive(Debug)]
pub(crate) enum LineError {
    /// More than `max` bytes arrived without a newline.
    TooLong { max: usize },
    /// The line is not UTF-8.
    Utf8(std::string::FromUtf8Error),
}

/// Bytes in, lines out. A line ends at `\n`; a `\r` before it is dropped; lines
/// that are empty after that are skipped. Never holds more than `max` bytes of an
/// unfinished line (plus the chunk being added).
///
/// In event-stream mode ([`set_event_stream`](Self::set_event_stream), for
/// Server-Sent Events) a line ends at `\r\n`, `\n` or `\r`, and empty lines
/// are returned: they end an event.
#[derive(Debug)]
pub(crate) struct Lines {
    buffer: BytesMut,
    /// Event-stream mode.
    events: bool,
    /// The last line ended at a `\r` that was the last byte buffered: a `\n`
    /// arriving next belongs to it.
    after_cr: bool,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
    /// Bytes of the blank lines skipped since the last line returned: they count
    /// towards the next line's size, so a stream of bare newlines is bounded too.
    blank: usize,
    max: usize,
}

impl Lines {
    pub(crate) fn new(max: usize) -> Self {
        Lines {
            buffer: BytesMut::new(),
            events: false,
            after_cr: false,
            scanned: 0,
            blank: 0,
            max,
        }
    }

    /// Switches to event-stream mode (for good).
    pub(crate) fn set_event_stream(&mut self) {
        self.events = true;
        self.scanned = 0;
    }

    /// Whether this reader is in event-stream mode.
    pub(crate) fn is_event_stream(&self) -> bool {
        self.events
    }

    pub(crate) fn push(&mut self, mut data: impl Buf) {
        while data.has_remaining() {
            let chunk = data.chunk();
            self.buffer.extend_from_slice(chunk);
            let n = chunk.len();
            data.advance(n);
        }
    }

    /// The next complete line, if one is buffered; `Err` if the unfinished one
    /// is already too long.
    pub(crate) fn next_line(&mut self) -> Option<Result<String, LineError>> {
        if self.events {
            return self.next_event_line();
        }
        loop {
            let Some(pos) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') else {
                self.scanned = self.buffer.len();
                if self.blank.saturating_add(self.buffer.len()) > self.max {
                    self.buffer.clear();
                    self.scanned = 0;
                    self.blank = 0;
                    return Some(Err(LineError::TooLong { max: self.max }));
                }
                return None;
            };
            let end = self.scanned + pos;
            let mut line = self.buffer.split_to(end + 1);
            self.scanned = 0;
            line.truncate(end);
            if let Some(line) = self.finish_line(line, 1) {
                return Some(line);
            }
        }
    }

    /// The next line of an event stream, empty ones included.
    fn next_event_line(&mut self) -> Option<Result<String, LineError>> {
        if self.after_cr && !self.buffer.is_empty() {
            self.after_cr = false;
            if self.buffer[0] == b'\n' {
                self.buffer.advance(1);
            }
        }
        let found = self.buffer[self.scanned..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r');
        let Some(pos) = found else {
            self.scanned = self.buffer.len();
            if self.buffer.len() > self.max {
                self.buffer.clear();
                self.scanned = 0;
                return Some(Err(LineError::TooLong { max: self.max }));
            }
            return None;
        };
        let end = self.scanned + pos;
        self.scanned = 0;
        if end > self.max {
            self.buffer.clear();
            return Some(Err(LineError::TooLong { max: self.max }));
        }
        let cr = self.buffer[end] == b'\r';
        let mut line = self.buffer.split_to(end + 1);
        line.truncate(end);
        if cr {
            match self.buffer.first() {
                Some(b'\n') => self.buffer.advance(1),
                Some(_) => {}
                None => self.after_cr = true,
            }
        }
        // The standard decodes an event stream as UTF-8 with replacement.
        Some(Ok(String::from_utf8_lossy(&line).into_owned()))
    }

    /// At the end of the input: whatever is left is the last line.
    pub(crate) fn finish(&mut self) -> Option<Result<String, LineError>> {
        if self.events {
            // An event stream's unfinished last line ends no event: it is
            // dropped with the event it belongs to.
            self.buffer.clear();
            self.scanned = 0;
            return None;
        }
        let rest = self.buffer.split();
        self.scanned = 0;
        self.finish_line(rest, 0)
    }

    /// A line cut from the buffer, `ended` the bytes of its newline.
    fn finish_line(
        &mut self,
        mut line: BytesMut,
        ended: usize,
    ) -> Option<Result<String, LineError>> {
        let consumed = line.len() + ended;
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        let size = self.blank.saturating_add(consumed);
        if size > self.max {
            self.blank = 0;
            return Some(Err(LineError::TooLong { max: self.max }));
        }
        if line.is_empty() {
            self.blank = size;
            return None;
        }
        self.blank = 0;
        Some(String::from_utf8(line.to_vec()).map_err(LineError::Utf8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks`, collecting every answer, then finishes.
    fn feed(max: usize, chunks: &[Vec<u8>]) -> (Vec<Result<String, String>>, usize) {
        let mut lines = Lines::new(max);
        let mut out = Vec::new();
        let mut peak = 0;
        let mut push = |r: Result<String, LineError>| {
            out.push(r.map_err(|e| match e {
                LineError::TooLong { .. } => "too long".to_owned(),
                LineError::Utf8(_) => "utf8".to_owned(),
            }))
        };
        for chunk in chunks {
            lines.push(&chunk[..]);
            peak = peak.max(lines.buffer.len());
            while let Some(r) = lines.next_line() {
                push(r);
            }
        }
        if let Some(r) = lines.finish() {
            push(r);
        }
        (out, peak)
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let (out, _) = feed(64, &[b"a\r\nb".to_vec(), b"c\n\n\r\nd".to_vec()]);
        assert_eq!(out, [Ok("a".into()), Ok("bc".into()), Ok("d".into())]);
    }

    #[test]
    fn blank_lines_count_towards_the_line_limit() {
        // 10 bare newlines, then nothing else: over a limit of 8.
        let (out, _) = feed(8, &[b"\n".repeat(10)]);
        assert_eq!(out, [Err("too long".to_owned())]);
        // Under the limit they are skipped as before.
        let (out, _) = feed(8, &[b"\n\r\nab\n".to_vec()]);
        assert_eq!(out, [Ok("ab".into())]);
        // Blank lines followed by a line: together over the limit.
        let (out, _) = feed(8, &[b"\n\n\n\nabcdef\n".to_vec()]);
        assert_eq!(out, [Err("too long".to_owned())]);
        // The count starts again after a line.
        let (out, _) = feed(8, &[b"\n\nabc\n\n\nabc\n".to_vec()]);
        assert_eq!(out, [Ok("abc".into()), Ok("abc".into())]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_memory_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32),
            max in 1usize..128,
        ) {
            let (_, peak) = feed(max, &chunks);
            prop_assert!(peak <= max + 64, "peak {peak} with max {max}");
        }

        #[test]
        fn any_chunking_of_valid_lines_gives_back_the_lines(
            lines in proptest::collection::vec("[a-z0-9{}\":, ]{1,20}", 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            crlf in any::<bool>(),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let text: String = lines.iter().map(|l| format!("{l}{sep}")).collect();
            let bytes = text.into_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(bytes[start..p].to_vec());
                start = p;
            }
            chunks.push(bytes[start..].to_vec());
            let (out, _) = feed(64, &chunks);
            let expected: Vec<Result<String, String>> = lines.into_iter().map(Ok).collect();
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn the_retry_after_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                let now = std::time::SystemTime::now();
                if let Some(wait) = crate::retry_after::parse_retry_after(&value, now) {
                    // Only digits (a count of seconds) or a date parse.
                    let text = value.to_str().unwrap_or_default().trim();
                    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                    prop_assert!(digits || httpdate::parse_http_date(text).is_ok(), "{text:?} -> {wait:?}");
                }
            }
        }
    }
}
