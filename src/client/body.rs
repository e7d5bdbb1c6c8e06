//! Reading a buffered response body, bounded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::error::{BodyError, BodyTooLarge, BoxError};

/// A response body as the transport hands it on: decoded by tower-http's
/// decompression (gzip, br, zstd) with the `compression` feature, as it came
/// without it. Boxed: the decoders make it ten times the size of `Incoming`.
#[cfg(feature = "compression")]
pub(crate) type ResponseBody =
    std::pin::Pin<Box<tower_http::decompression::DecompressionBody<Incoming>>>;
/// A response body as the transport hands it on: as it came (no `compression`
/// feature).
#[cfg(not(feature = "compression"))]
pub(crate) type ResponseBody = Incoming;

pin_project! {
    /// Reads a whole body of at most `limit` bytes.
    ///
    /// Small answers usually arrive in one chunk, which is kept as it is: no copy
    /// and no list of chunks. From a second chunk on, the data goes into one
    /// buffer sized from the body's length when it is known. A `Content-Length`
    /// over the limit fails before anything is read.
    pub(super) struct ReadBody {
        #[pin]
        body: ResponseBody,
        first: Option<Bytes>,
        rest: BytesMut,
        len: usize,
        limit: usize,
    }
}

impl ReadBody {
    pub(super) fn new(body: ResponseBody, limit: usize) -> Self {
        ReadBody {
            body,
            first: None,
            rest: BytesMut::new(),
            len: 0,
            limit,
        }
    }
}

impl Future for ReadBody {
    type Output = Result<Bytes, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let too_large = |limit| Poll::Ready(Err(Box::new(BodyTooLarge::new(limit)) as BoxError));
        if *this.len == 0 && this.body.size_hint().lower() > *this.limit as u64 {
            return too_large(*this.limit);
        }
        loop {
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Err(Box::new(BodyError::new(e)))),
                None => break,
            };
            // Trailers carry no body bytes.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            *this.len += data.len();
            if *this.len > *this.limit {
                return too_large(*this.limit);
            }
            match this.first.take() {
                None if this.rest.is_empty() => *this.first = Some(data),
                first => {
                    if let Some(first) = first {
                        // What is left to come, when the length is known.
                        let remaining = usize::try_from(this.body.size_hint().lower()).unwrap_or(0);
                        let total = this.len.saturating_add(remaining).min(*this.limit);
                        this.rest.reserve(total.max(*this.len));
                        this.rest.extend_from_slice(&first);
                    }
                    this.rest.extend_from_slice(&data);
                }
            }
        }
        Poll::Ready(Ok(match this.first.take() {
            Some(first) => first,
            None => std::mem::take(this.rest).freeze(),
        }))
    }
}
