//! [`ReadAheadBody`]: the data read ahead, then the rest of the body.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body whose first frames were read ahead by a
    /// [`ReadAhead`](super::ReadAhead) service: it yields them first, then the
    /// rest of the body, as the server sent it.
    pub struct ReadAheadBody<B>
    where
        B: Body,
    {
        ahead: VecDeque<Frame<B::Data>>,
        // The body ended while it was read ahead: never polled again.
        ended: bool,
        #[pin]
        inner: B,
    }
}

impl<B: Body> ReadAheadBody<B> {
    /// A body handed on as it came, nothing read ahead.
    pub(crate) fn unread(inner: B) -> Self {
        ReadAheadBody {
            ahead: VecDeque::new(),
            ended: false,
            inner,
        }
    }

    pub(crate) fn read(ahead: VecDeque<Frame<B::Data>>, ended: bool, inner: B) -> Self {
        ReadAheadBody {
            ahead,
            ended,
            inner,
        }
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Whether any of the body was read ahead.
    pub fn was_read_ahead(&self) -> bool {
        !self.ahead.is_empty() || self.ended
    }

    /// The inner body, if nothing of it was read ahead (an error status, a
    /// body of known length, a layer that let it pass); else this body back, so
    /// that nothing read is dropped unseen.
    pub fn into_unread(self) -> Result<B, Self> {
        if self.was_read_ahead() {
            Err(self)
        } else {
            Ok(self.inner)
        }
    }
}

impl<B: Body> Body for ReadAheadBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.ahead.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if *this.ended {
            return Poll::Ready(None);
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self
            .ahead
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.remaining() as u64))
            .sum();
        if self.ended {
            return SizeHint::with_exact(ahead);
        }
        let rest = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(ahead));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for ReadAheadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadAheadBody")
            .field("frames_ahead", &self.ahead.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
