//! The response future of [`ReadAhead`](super::ReadAhead).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{FirstContent, ReadAheadBody};
use crate::error::{BodyError, BoxError, Elapsed, StreamStalled};

/// What bounds the reading ahead of one answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Whether this answer is to be read ahead at all.
    pub(super) read: bool,
    pub(super) idle_timeout: Duration,
    pub(super) max_bytes: usize,
    pub(super) deadline: Option<Instant>,
}

pin_project! {
    /// The future returned by [`ReadAhead`](super::ReadAhead): the inner
    /// service's answer, then, for a streamed 2xx answer, its first content.
    pub struct ResponseFuture<F, B, C>
    where
        B: Body,
    {
        #[pin]
        state: State<F, B>,
        bounds: Bounds,
        until: C,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
    {
        Waiting { #[pin] future: F },
        // `None` once the answer has been handed on. Boxed: only a streamed
        // answer is read ahead, and the layers above move this future with
        // every call.
        Reading { read: Option<Box<Reading<B>>> },
    }
}

/// An answer being read ahead.
struct Reading<B: Body> {
    parts: http::response::Parts,
    body: B,
    ahead: VecDeque<Frame<B::Data>>,
    bytes: usize,
    started: Instant,
    // Boxed: only streamed answers have one.
    timer: Pin<Box<Sleep>>,
}

impl<F, B: Body, C> ResponseFuture<F, B, C> {
    pub(super) fn new(future: F, bounds: Bounds, until: C) -> Self {
        ResponseFuture {
            state: State::Waiting { future },
            bounds,
            until,
        }
    }
}

/// When the wait for the next chunk ends: after the idle timeout, or at the
/// deadline if that comes first.
fn wake_at(bounds: &Bounds, now: Instant) -> Instant {
    let idle = now
        .checked_add(bounds.idle_timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
    bounds.deadline.map_or(idle, |deadline| deadline.min(idle))
}

impl<F, B, C, E> Future for ResponseFuture<F, B, C>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
    C: FirstContent,
{
    type Output = Result<http::Response<ReadAheadBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let streamed = this.bounds.read
                        && response.status().is_success()
                        && !response.body().is_end_stream();
                    if !streamed {
                        return Poll::Ready(Ok(response.map(ReadAheadBody::unread)));
                    }
                    let (parts, body) = response.into_parts();
                    let now = Instant::now();
                    this.state.set(State::Reading {
                        read: Some(Box::new(Reading {
                            parts,
                            body,
                            ahead: VecDeque::new(),
                            bytes: 0,
                            started: now,
                            timer: Box::pin(tokio::time::sleep_until(wake_at(this.bounds, now))),
                        })),
                    });
                }
                StateProj::Reading { read } => {
                    let Some(reading) = read.as_mut() else {
                        panic!("`read_ahead::ResponseFuture` polled after completion");
                    };
                    let ended = ready!(reading.poll_ahead(this.bounds, this.until, cx))?;
                    let Some(reading) = read.take() else {
                        unreachable!("checked above");
                    };
                    let Reading {
                        parts, body, ahead, ..
                    } = *reading;
                    let body = ReadAheadBody::read(ahead, ended, body);
                    return Poll::Ready(Ok(http::Response::from_parts(parts, body)));
                }
            }
        }
    }
}

impl<B> Reading<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads until the first content, the end (`true`) or `max_bytes`.
    fn poll_ahead<C: FirstContent>(
        &mut self,
        bounds: &Bounds,
        until: &mut C,
        cx: &mut Context<'_>,
    ) -> Poll<Result<bool, BoxError>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let arrived = match frame.data_ref() {
                        Some(data) if data.has_remaining() => {
                            self.bytes = self.bytes.saturating_add(data.remaining());
                            until.arrived(data.chunk()) || self.bytes >= bounds.max_bytes
                        }
                        // An empty frame is no progress: not kept, and the
                        // idle timer runs on.
                        Some(_) => continue,
                        // Trailers: the body says no more.
                        None => true,
                    };
                    self.ahead.push_back(frame);
                    if arrived {
                        return Poll::Ready(Ok(false));
                    }
                    let now = Instant::now();
                    self.timer.as_mut().reset(wake_at(bounds, now));
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(Box::new(BodyError::new(e))));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(true)),
                Poll::Pending => {
                    ready!(self.timer.as_mut().poll(cx));
                    let now = Instant::now();
                    return Poll::Ready(Err(match bounds.deadline {
                        Some(deadline) if now >= deadline => Box::new(Elapsed::deadline(
                            deadline.saturating_duration_since(self.started),
                        )),
                        _ => Box::new(StreamStalled::new(bounds.idle_timeout)),
                    }));
                }
            }
        }
    }
}

impl<F, B: Body, C> fmt::Debug for ResponseFuture<F, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("idle_timeout", &self.bounds.idle_timeout)
            .finish_non_exhaustive()
    }
}
