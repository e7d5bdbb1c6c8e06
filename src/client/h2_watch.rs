//! The body of an attempt as hyper sends it, and the watch that bounds an
//! HTTP/2 stream's two silent waits: for a stream slot on the connection
//! (`pool_timeout`), and for the peer's flow-control window (`write_timeout`).
//!
//! Over HTTP/1 the socket shows both: a connection slot is the pool's, and a
//! write that makes no progress is timed by the connector. Over HTTP/2 many
//! streams share one connection. A stream queued behind the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` waits inside hyper, and a body the peer
//! grants no window to waits inside h2 while the socket is idle. Neither is
//! seen below, so the body itself tells: hyper polls it first when the
//! stream opens, and polls each next chunk only once the chunk before was
//! given window. A body that is never polled is queued; one that is not
//! polled again before it has ended is stalled.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use hyper_util::client::legacy::connect::Connection;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::{BoxError, PoolTimeout, WriteStalled};

/// The largest chunk handed to hyper at once: one default HTTP/2 frame, so
/// that a window that stays shut is seen within a frame of the last one sent.
const CHUNK: usize = 16 * 1024;

/// A request body: whole, or (watched) in chunks whose progress is recorded.
/// As small as `Full<Bytes>` (the watched part is boxed), so that hyper, which
/// moves a request several times, moves no more than it did.
#[derive(Debug)]
pub(crate) enum SendBody {
    /// The bytes left to send: all of them, or none once sent.
    Whole(Bytes),
    Watched(Box<Watched>),
}

#[derive(Debug)]
pub(crate) struct Watched {
    rest: Bytes,
    progress: Arc<Progress>,
}

impl SendBody {
    pub(crate) fn whole(bytes: Bytes) -> SendBody {
        SendBody::Whole(bytes)
    }
}

/// What a watched body shares with its watch.
#[derive(Debug)]
pub(crate) struct Progress {
    started: Instant,
    /// Nanoseconds after `started` of the last poll; 0 before the first.
    last: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    fn polled(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos.max(1), Ordering::Release);
    }
}

impl Body for SendBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SendBody::Whole(bytes) if bytes.is_empty() => Poll::Ready(None),
            SendBody::Whole(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            SendBody::Watched(watched) => {
                let Watched { rest, progress } = &mut **watched;
                progress.polled();
                if rest.is_empty() {
                    progress.done.store(true, Ordering::Release);
                    return Poll::Ready(None);
                }
                let chunk = rest.split_to(rest.len().min(CHUNK));
                if rest.is_empty() {
                    progress.done.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SendBody::Whole(bytes) => bytes.is_empty(),
            SendBody::Watched(watched) => watched.rest.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let len = match self {
            SendBody::Whole(bytes) => bytes.len(),
            SendBody::Watched(watched) => watched.rest.len(),
        };
        SizeHint::with_exact(len as u64)
    }
}

/// Bounds a watched body's waits, from the attempt's future.
#[derive(Debug)]
pub(crate) struct Watch {
    progress: Arc<Progress>,
    timer: Pin<Box<Sleep>>,
    /// Whether a stream slot is waited for: only while other streams are in
    /// flight can this one be queued.
    queued_bound: Option<Duration>,
    write_timeout: Duration,
}

impl Watch {
    /// A watched body of `bytes`, and its watch; `queued_bound` bounds the
    /// wait for the stream to open, if it may be queued.
    pub(crate) fn body(
        bytes: Bytes,
        queued_bound: Option<Duration>,
        write_timeout: Duration,
    ) -> (SendBody, Watch) {
        let started = Instant::now();
        let progress = Arc::new(Progress {
            started,
            last: AtomicU64::new(0),
            done: AtomicBool::new(false),
        });
        let first = queued_bound.map_or(write_timeout, |bound| bound.min(write_timeout));
        let watch = Watch {
            progress: progress.clone(),
            timer: Box::pin(tokio::time::sleep_until(deadline(started, first))),
            queued_bound,
            write_timeout,
        };
        let body = SendBody::Watched(Box::new(Watched {
            rest: bytes,
            progress,
        }));
        (body, watch)
    }

    /// Whether the body has been sent whole: the watch has nothing left to do.
    pub(crate) fn is_done(&self) -> bool {
        self.progress.done.load(Ordering::Acquire)
    }

    /// An error once a wait has lasted past its bound; Pending (the timer set
    /// for the next check) otherwise.
    pub(crate) fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<BoxError> {
        loop {
            if self.is_done() || self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let progress = &*self.progress;
            let now = Instant::now();
            let last = progress.last.load(Ordering::Acquire);
            let next = if last == 0 {
                // Not opened yet: queued for a stream slot, or the connection
                // is still being made (which the connect timeout bounds).
                let waited = now.saturating_duration_since(progress.started);
                match self.queued_bound {
                    Some(bound) if waited >= bound => {
                        return Poll::Ready(Box::new(PoolTimeout::new(waited)));
                    }
                    Some(bound) => deadline(progress.started, bound),
                    // Only the attempt's own timeout bounds it: look again
                    // later, in case it opens and then stalls.
                    None => deadline(now, self.write_timeout),
                }
            } else {
                let at = deadline(progress.started, Duration::from_nanos(last));
                if now.saturating_duration_since(at) >= self.write_timeout {
                    return Poll::Ready(Box::new(WriteStalled::new(self.write_timeout)));
                }
                deadline(at, self.write_timeout)
            };
            self.timer.as_mut().reset(next);
        }
    }
}

fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .unwrap_or_else(|| from + Duration::from_secs(86_400 * 365))
}

/// A connector that notes when a connection agreed on HTTP/2 (ALPN), so that
/// the transport watches HTTP/2 attempts from then on.
#[derive(Clone, Debug)]
pub(crate) struct LearnH2<C> {
    pub(crate) inner: C,
    pub(crate) known: Arc<AtomicBool>,
}

impl<C, U> Service<U> for LearnH2<C>
where
    C: Service<U>,
    C::Response: Connection,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = Learning<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: U) -> Self::Future {
        Learning {
            future: self.inner.call(target),
            known: self.known.clone(),
        }
    }
}

pin_project! {
    /// The future of [`LearnH2`].
    pub(crate) struct Learning<F> {
        #[pin]
        future: F,
        known: Arc<AtomicBool>,
    }
}

impl<F, T, E> Future for Learning<F>
where
    F: Future<Output = Result<T, E>>,
    T: Connection,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.future.poll(cx));
        if let Ok(connection) = &result {
            if connection.connected().is_negotiated_h2() {
                this.known.store(true, Ordering::Relaxed);
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::connect::Connected;

    struct Conn(bool);

    impl Connection for Conn {
        fn connected(&self) -> Connected {
            let connected = Connected::new();
            if self.0 {
                connected.negotiated_h2()
            } else {
                connected
            }
        }
    }

    #[test]
    fn a_body_is_no_larger_than_a_full_one() {
        assert_eq!(
            std::mem::size_of::<SendBody>(),
            std::mem::size_of::<http_body_util::Full<Bytes>>()
        );
    }

    #[tokio::test]
    async fn a_connection_that_agreed_on_h2_marks_the_server_as_speaking_it() {
        use tower::ServiceExt;
        for h2 in [false, true] {
            let known = Arc::new(AtomicBool::new(false));
            let connector = LearnH2 {
                inner: tower::service_fn(move |_: ()| async move { Ok::<_, Infallible>(Conn(h2)) }),
                known: known.clone(),
            };
            connector.oneshot(()).await.unwrap();
            assert_eq!(known.load(Ordering::Relaxed), h2);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_is_handed_on_in_frames_and_its_progress_seen() {
        let bytes = Bytes::from(vec![7u8; CHUNK * 2 + 5]);
        let (mut body, mut watch) =
            Watch::body(bytes, Some(Duration::from_secs(1)), Duration::from_secs(2));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(watch.poll_stalled(&mut cx).is_pending());
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            sizes.push(frame.into_data().unwrap().len());
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 5]);
        assert!(watch.is_done());
    }
}
