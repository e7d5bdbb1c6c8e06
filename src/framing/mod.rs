//! How a streamed body is cut into pieces: bounded lines (NDJSON, and the
//! lines of an event stream) and Server-Sent Events. Free of I/O and of
//! every layer, so that the read-ahead layer, the stream dialects and the
//! client's [`StreamResponse`](crate::client::StreamResponse) share one
//! reader.

pub(crate) mod lines;
pub(crate) mod sse;

pub use self::sse::Event;

/// Whether an answer's content type is `text/event-stream`.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}
