//! Errors of reading a response body; re-exported by
//! [`client`](crate::client).

use std::fmt;

use super::BoxError;

// ===== body errors =====

/// A buffered response body was larger than `max_response_bytes`.
///
/// Found in the source chain of an [`Error`](crate::Error) whose [`kind`](crate::Error::kind) is
/// [`ErrorKind::Body`](crate::ErrorKind::Body). Not retried: the next answer would be as large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: usize,
}

impl BodyTooLarge {
    pub(crate) fn new(limit: usize) -> Self {
        BodyTooLarge { limit }
    }

    /// The limit that was exceeded, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response body is larger than max_response_bytes ({} bytes)",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}

/// How much of a stream had arrived when it failed, after it was handed to
/// the caller: from [`Error::stream_cut`](crate::Error::stream_cut). The
/// caller holds a partial answer: discard it, or keep it knowing it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCut {
    content_events: Option<u64>,
    bytes: u64,
    restarted: bool,
}

impl StreamCut {
    pub(crate) fn new(content_events: Option<u64>, bytes: u64) -> Self {
        StreamCut {
            content_events,
            bytes,
            restarted: false,
        }
    }

    pub(crate) fn with_restart(mut self) -> Self {
        self.restarted = true;
        self
    }

    /// Whether the stream then restarted from the beginning.
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    /// The events that carried content, when the stream was read in a
    /// [dialect](crate::provider::dialect).
    pub fn content_events(&self) -> Option<u64> {
        self.content_events
    }

    /// The bytes of the body that had arrived.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl fmt::Display for StreamCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.content_events {
            Some(events) => write!(f, "after {events} content events ({} bytes)", self.bytes),
            None => write!(f, "after {} bytes", self.bytes),
        }
    }
}

/// Reading a response body failed part-way (the connection broke, the body was
/// shorter than announced, a line was too long).
#[derive(Debug)]
pub struct BodyError {
    source: Option<BoxError>,
    message: String,
}

impl BodyError {
    pub(crate) fn new(source: impl Into<BoxError>) -> Self {
        let source = source.into();
        BodyError {
            message: format!("reading the response body failed: {source}"),
            source: Some(source),
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
