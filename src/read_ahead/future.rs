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

use super::{Arrival, FirstContent, InBand, ReadAheadBody};
use crate::error::{BodyError, BoxError, Elapsed, StreamStalled};

/// What bounds the reading ahead of one answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) idle_timeout: Duration,
    /// The bound on the wait for the first content, from the first poll.
    pub(super) first_content: Option<Duration>,
    pub(super) max_bytes: usize,
    pub(super) deadline: Option<Instant>,
}

/// What an answer to be read ahead needs from the call on: its bounds, what
/// tells its first content, and the first-content timer while the head is
/// awaited. Boxed, and only for those answers: every other call's future
/// carries a null pointer instead.
pub(super) struct Ahead<C> {
    pub(super) bounds: Bounds,
    pub(super) until: C,
    first_content: Option<Pin<Box<Sleep>>>,
}

impl<C> Ahead<C> {
    pub(super) fn new(bounds: Bounds, until: C) -> Box<Self> {
        Box::new(Ahead {
            bounds,
            until,
            first_content: None,
        })
    }
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
        // `None` for an answer that is not read ahead.
        ahead: Option<Box<Ahead<C>>>,
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
    /// When the first content must have come, if it must.
    first_content: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl<F, B: Body, C> ResponseFuture<F, B, C> {
    pub(super) fn new(future: F, ahead: Option<Box<Ahead<C>>>) -> Self {
        ResponseFuture {
            state: State::Waiting { future },
            ahead,
        }
    }
}

/// When the wait for the next chunk ends: after the idle timeout, or at the
/// deadline or the first-content bound if one comes first.
fn wake_at(bounds: &Bounds, first_content: Option<Instant>, now: Instant) -> Instant {
    let idle = now
        .checked_add(bounds.idle_timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
    let wake = bounds.deadline.map_or(idle, |deadline| deadline.min(idle));
    first_content.map_or(wake, |at| at.min(wake))
}

/// The first-content bound starting `now`, or a year away if it overflows.
fn first_content_at(limit: Duration, now: Instant) -> Instant {
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
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
                    let response = match future.poll(cx) {
                        Poll::Ready(response) => response.map_err(Into::into)?,
                        Poll::Pending => {
                            let Some(ahead) = this.ahead.as_mut() else {
                                return Poll::Pending;
                            };
                            let Some(limit) = ahead.bounds.first_content else {
                                return Poll::Pending;
                            };
                            let timer = ahead.first_content.get_or_insert_with(|| {
                                let at = first_content_at(limit, Instant::now());
                                Box::pin(tokio::time::sleep_until(at))
                            });
                            ready!(timer.as_mut().poll(cx));
                            return Poll::Ready(Err(Box::new(StreamStalled::no_content_within(
                                limit,
                            ))));
                        }
                    };
                    let Some(ahead) = this.ahead.as_mut() else {
                        return Poll::Ready(Ok(response.map(ReadAheadBody::unread)));
                    };
                    let streamed =
                        response.status().is_success() && !response.body().is_end_stream();
                    if !streamed {
                        return Poll::Ready(Ok(response.map(ReadAheadBody::unread)));
                    }
                    let (parts, body) = response.into_parts();
                    ahead.until.head(&parts);
                    let now = Instant::now();
                    let first_content = match (&ahead.first_content, ahead.bounds.first_content) {
                        (Some(timer), _) => Some(timer.deadline()),
                        (None, Some(limit)) => Some(first_content_at(limit, now)),
                        (None, None) => None,
                    };
                    ahead.first_content = None;
                    let wake = wake_at(&ahead.bounds, first_content, now);
                    this.state.set(State::Reading {
                        read: Some(Box::new(Reading {
                            parts,
                            body,
                            ahead: VecDeque::new(),
                            bytes: 0,
                            started: now,
                            first_content,
                            timer: Box::pin(tokio::time::sleep_until(wake)),
                        })),
                    });
                }
                StateProj::Reading { read } => {
                    let (Some(reading), Some(ahead)) = (read.as_mut(), this.ahead.as_mut()) else {
                        panic!("`read_ahead::ResponseFuture` polled after completion");
                    };
                    let Ahead { bounds, until, .. } = &mut **ahead;
                    let ended = ready!(reading.poll_ahead(bounds, until, cx))?;
                    let Some(reading) = read.take() else {
                        unreachable!("checked above");
                    };
                    let Reading {
                        mut parts,
                        body,
                        ahead: frames,
                        ..
                    } = *reading;
                    match until.arrival(ended) {
                        Arrival::Content => {}
                        Arrival::Error(error) => {
                            // Answered as the status the error stands for.
                            let status = error.kind().status();
                            parts.extensions.insert(InBand(parts.status));
                            parts.status = status;
                            parts.extensions.insert(error);
                        }
                        Arrival::Cut => {
                            let cut = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the stream ended before its first content, without its end marker",
                            );
                            return Poll::Ready(Err(Box::new(BodyError::new(cut))));
                        }
                    }
                    let body = ReadAheadBody::read(frames, ended, body);
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
                    self.timer
                        .as_mut()
                        .reset(wake_at(bounds, self.first_content, now));
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(Box::new(BodyError::new(e))));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(true)),
                Poll::Pending => {
                    ready!(self.timer.as_mut().poll(cx));
                    let now = Instant::now();
                    return Poll::Ready(Err(match (bounds.deadline, self.first_content) {
                        (Some(deadline), _) if now >= deadline => Box::new(Elapsed::deadline(
                            deadline.saturating_duration_since(self.started),
                        )),
                        (_, Some(at)) if now >= at => Box::new(StreamStalled::no_content_within(
                            bounds.first_content.unwrap_or_default(),
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
            .field("read_ahead", &self.ahead.is_some())
            .finish_non_exhaustive()
    }
}
