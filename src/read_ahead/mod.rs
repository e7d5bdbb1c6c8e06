//! Reading a streamed answer ahead to its first content, inside the attempt, so
//! that a stream that breaks or stalls before delivering anything is retried by
//! [`RetryLayer`](crate::RetryLayer) like any failed attempt.
//!
//! A streamed answer (Server-Sent Events, NDJSON) arrives in two steps: the
//! head, then the body over seconds or minutes. A retry layer sees only the
//! first step: a `200` whose body then closes, or says nothing, before its
//! first line has already "succeeded". [`ReadAheadLayer`] moves that moment:
//! below the retry layer, it answers only once the body has shown its first
//! content ([`FirstLine`] by default: a line's end), has ended, or has sent
//! [`max_bytes`](ReadAheadLayer::max_bytes). What it read is handed on
//! unchanged at the front of the body ([`ReadAheadBody`]), so nothing is lost
//! and nothing is read twice. Before that moment a failure is the attempt's:
//!
//! | while reading ahead | the attempt fails with | retried? |
//! | --- | --- | --- |
//! | the body breaks (reset, cut short) | [`BodyError`](crate::error::BodyError) | by the replay rule: the head came, so only a request safe to repeat |
//! | no data for `idle_timeout` | [`StreamStalled`] | the same |
//! | the call's [`RequestDeadline`] passes | [`Elapsed`](crate::timeout::Elapsed) (`is_deadline`) | never |
//!
//! Only a 2xx answer is read ahead (an error status is the retry layer's to
//! judge from its head): every one by default, or, with
//! [`only_marked`](ReadAheadLayer::only_marked), only the answers to requests
//! that carry [`ExpectStream`] in their extensions, so that one stack serves
//! streamed and whole-body calls alike (as [`HttpClient`](crate::HttpClient)'s
//! does). Once the first content has arrived, the stream is the caller's:
//! nothing above retries it, so no line is ever delivered twice.
//!
//! The wait for the first content is bounded by `idle_timeout` between chunks
//! (and by the deadline), not by a [`TimeoutLayer`](crate::TimeoutLayer) below,
//! which bounds the wait for the head: put this layer above the timeout, as
//! [`HttpClient`](crate::HttpClient) does for its streamed calls.
//!
//! What counts as content is a [`FirstContent`]: a line by default; a stream
//! dialect can say "the first generated token" instead.
//!
//! # Example
//!
//! A stream whose first answer breaks before its first line, over a service of
//! one's own: the retry layer sends it again.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, StreamBody};
//! use stache_resilience::classify::HttpClassifier;
//! use stache_resilience::read_ahead::ReadAheadLayer;
//! use stache_resilience::retry::{RetryConfig, RetryLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! type Chunk = Result<http_body::Frame<Bytes>, std::io::Error>;
//! let sent = Arc::new(AtomicU32::new(0));
//! let count = sent.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::default()).classifier(HttpClassifier))
//!     .layer(ReadAheadLayer::new(Duration::from_secs(10)))
//!     .service_fn(move |_req: http::Request<String>| {
//!         let first = count.fetch_add(1, Ordering::SeqCst) == 0;
//!         let chunks: Vec<Chunk> = if first {
//!             // Cut before the first line ends.
//!             vec![Ok(http_body::Frame::data(Bytes::from("data: {\"tok"))), Err(std::io::ErrorKind::ConnectionReset.into())]
//!         } else {
//!             vec![Ok(http_body::Frame::data(Bytes::from("data: {\"token\":\"hi\"}\n\n")))]
//!         };
//!         async move {
//!             Ok::<_, std::io::Error>(http::Response::new(StreamBody::new(futures_util::stream::iter(chunks))))
//!         }
//!     });
//!
//! let res = svc.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "data: {\"token\":\"hi\"}\n\n");
//! assert_eq!(sent.load(Ordering::SeqCst), 2);
//! # }
//! ```

mod body;
mod first_token;
pub mod future;
mod options;

use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

pub use self::body::ReadAheadBody;
pub use self::first_token::FirstToken;
pub use self::options::StreamOptions;
use crate::error::BoxError;
pub use crate::error::StreamStalled;
use crate::provider::ProviderError;
use crate::timeout::RequestDeadline;

/// The most a [`ReadAheadLayer`] reads ahead unless told otherwise: 64 KiB.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

/// What counts as the first content of a streamed body; see the [module
/// documentation](self).
///
/// Fed each chunk of data as it arrives, in order, until it says the content
/// has arrived. A stream dialect keeps what it needs between chunks.
pub trait FirstContent {
    /// Looks at the next chunk of the body: whether the wait is over (the
    /// first content, or what [`arrival`](Self::arrival) will tell, has
    /// arrived with it).
    fn arrived(&mut self, chunk: &[u8]) -> bool;

    /// Gets ready for the answer to one request, before it is sent: a reader
    /// that takes its rules from the request (as [`FirstToken`] its
    /// dialect) reads them here. Called only for the answers read ahead.
    /// Does nothing by default.
    fn prepare(&mut self, request: &http::Extensions) {
        let _ = request;
    }

    /// Looks at the answer's head before its body (its content type). Does
    /// nothing by default.
    fn head(&mut self, response: &http::response::Parts) {
        let _ = response;
    }

    /// What the wait ended with, once [`arrived`](Self::arrived) said it is
    /// over (`ended` false), `max_bytes` were read, or the body ended
    /// (`ended` true). [`Arrival::Content`] by default.
    fn arrival(&mut self, ended: bool) -> Arrival {
        let _ = ended;
        Arrival::Content
    }
}

/// What the wait for a stream's first content ended with; from
/// [`FirstContent::arrival`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Arrival {
    /// Content, or a whole answer: the stream is handed on.
    Content,
    /// An error the provider sent inside its `2xx` stream before any
    /// content (Anthropic's `overloaded_error` event, say). The answer is
    /// handed on as the status the error stands for
    /// ([`ProviderErrorKind::status`](crate::provider::ProviderErrorKind::status)),
    /// with the [`ProviderError`] and [`InBand`] in its extensions, so that
    /// the layers above retry it, count it and move on as they would that
    /// status.
    Error(ProviderError),
    /// The body ended before any content and without its end marker: the
    /// attempt fails with a [`BodyError`](crate::error::BodyError), as a
    /// stream that breaks.
    Cut,
}

/// In the extensions of an answer whose status a [`ReadAhead`] set from an
/// error sent inside a `2xx` stream ([`Arrival::Error`]): the provider
/// answered with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InBand(pub http::StatusCode);

/// A per-request bound on the wait for a stream's first content, from the
/// request being sent (the head's wait included), in the request's
/// extensions: overrides the layer's
/// [`first_content_timeout`](ReadAheadLayer::first_content_timeout).
/// [`HttpClient`](crate::HttpClient) sets it from `first_token_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstContentTimeout(pub Duration);

/// Put in a request's extensions to have its answer read ahead by a layer
/// that reads [`only_marked`](ReadAheadLayer::only_marked) requests' answers.
/// [`HttpClient`](crate::HttpClient) marks its streamed calls with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpectStream;

/// The end of the first line that is not empty (`\n`, or the `\r` that
/// Server-Sent Events also allow, after at least one other byte): a comment
/// or an event field counts; blank lines before it do not, as a line reader
/// skips them.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstLine {
    /// The current line has a byte that is not a line end.
    started: bool,
}

impl FirstContent for FirstLine {
    fn arrived(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            match b {
                b'\n' | b'\r' if self.started => return true,
                b'\n' | b'\r' => {}
                _ => self.started = true,
            }
        }
        false
    }
}

/// Reads a streamed 2xx answer ahead to its first content inside the attempt;
/// see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct ReadAheadLayer<F = FirstLine> {
    idle_timeout: Duration,
    first_content: Option<Duration>,
    max_bytes: usize,
    only_marked: bool,
    until: F,
}

impl ReadAheadLayer {
    /// A layer that waits at most `idle_timeout` between chunks for a stream's
    /// first line.
    pub const fn new(idle_timeout: Duration) -> Self {
        ReadAheadLayer {
            idle_timeout,
            first_content: None,
            max_bytes: DEFAULT_MAX_BYTES,
            only_marked: false,
            until: FirstLine { started: false },
        }
    }
}

impl<F> ReadAheadLayer<F> {
    /// Hands the stream on once `max_bytes` have arrived without the first
    /// content (default [`DEFAULT_MAX_BYTES`]): a server that sends that much
    /// is answering, and a reader above judges what it sent.
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Bounds the wait for the first content, from the request being sent
    /// (the wait for the head included), whatever keep-alives or metadata
    /// arrive meanwhile: past it the attempt fails with a [`StreamStalled`]
    /// ([`is_first_content`](StreamStalled::is_first_content)). None by
    /// default; a request's [`FirstContentTimeout`] overrides it.
    pub const fn first_content_timeout(mut self, limit: Duration) -> Self {
        self.first_content = Some(limit);
        self
    }

    /// Reads ahead only the answers to requests marked with [`ExpectStream`];
    /// the others pass through as they came, at the cost of one look in the
    /// request's extensions.
    pub const fn only_marked(mut self) -> Self {
        self.only_marked = true;
        self
    }

    /// Waits for `until` to see its content instead of the first line.
    pub fn until<G: FirstContent + Clone>(self, until: G) -> ReadAheadLayer<G> {
        ReadAheadLayer {
            idle_timeout: self.idle_timeout,
            first_content: self.first_content,
            max_bytes: self.max_bytes,
            only_marked: self.only_marked,
            until,
        }
    }
}

impl<S, F: Clone> Layer<S> for ReadAheadLayer<F> {
    type Service = ReadAhead<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadAhead {
            inner,
            settings: std::sync::Arc::new(Settings {
                idle_timeout: self.idle_timeout,
                first_content: self.first_content,
                max_bytes: self.max_bytes,
                only_marked: self.only_marked,
                until: self.until.clone(),
            }),
        }
    }
}

/// A service whose streamed answers are read ahead to their first content; made
/// by [`ReadAheadLayer`].
///
/// # Errors
///
/// The inner service's errors, boxed, and the failures of the table in the
/// [module documentation](self).
///
/// # Cancellation
///
/// Dropping the response future drops the answer and what was read of it.
#[derive(Debug, Clone)]
pub struct ReadAhead<S, F = FirstLine> {
    inner: S,
    // Shared by the clones: the layers above move and clone this service
    // with every call, and its settings are the layer's.
    settings: std::sync::Arc<Settings<F>>,
}

/// A [`ReadAhead`]'s settings, from its layer.
#[derive(Debug)]
struct Settings<F> {
    idle_timeout: Duration,
    first_content: Option<Duration>,
    max_bytes: usize,
    only_marked: bool,
    until: F,
}

impl<S, F> ReadAhead<S, F> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, Req, B> Service<http::Request<Req>> for ReadAhead<S, F>
where
    S: Service<http::Request<Req>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
    F: FirstContent + Clone,
{
    type Response = http::Response<ReadAheadBody<B>>;
    type Error = BoxError;
    type Future = future::ResponseFuture<S::Future, B, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Req>) -> Self::Future {
        let extensions = req.extensions();
        let settings = &*self.settings;
        let read = !settings.only_marked || extensions.get::<ExpectStream>().is_some();
        let ahead = read.then(|| {
            let mut until = settings.until.clone();
            until.prepare(extensions);
            let first_content = extensions
                .get::<FirstContentTimeout>()
                .map(|t| t.0)
                .or(settings.first_content);
            future::Ahead::new(
                future::Bounds {
                    idle_timeout: settings.idle_timeout,
                    first_content,
                    max_bytes: settings.max_bytes,
                    deadline: extensions.get::<RequestDeadline>().map(|d| d.0),
                },
                until,
            )
        });
        future::ResponseFuture::new(self.inner.call(req), ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_first_that_is_not_empty_whatever_the_chunks() {
        let arrives = |chunks: &[&[u8]]| {
            let mut first = FirstLine::default();
            chunks.iter().position(|chunk| first.arrived(chunk))
        };
        assert_eq!(arrives(&[b"\n", b"\r\n", b"{\"a\"", b"}\n"]), Some(3));
        assert_eq!(arrives(&[b": keep-alive\n"]), Some(0));
        assert_eq!(
            arrives(&[b"data: x\r"]),
            Some(0),
            "a bare CR ends an SSE line"
        );
        assert_eq!(arrives(&[b"\n\n", b"\r"]), None);
    }
}
