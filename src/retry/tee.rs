//! [`TeeBody`]: a request body kept as it is sent, so that a retry can send it
//! again.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Locks the shared state; a panic elsewhere while it was held left it whole
/// (every change to it is a single assignment), so poison is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request body that keeps what it sends, up to a cap, so that a copy can send
/// it again; what [`RetryLayer`](super::RetryLayer) sends in place of a body it
/// cannot copy (`hyper::body::Incoming`, a stream).
///
/// The first attempt reads the original body and keeps each chunk (a reference
/// count for `Bytes`); a copy ([`try_clone`](Self::try_clone)) replays the kept
/// chunks and trailers, then reads on where the original stopped, so an attempt
/// that was answered before its body was read in full leaves nothing lost. Only
/// the newest copy reads the original: an older one, whose attempt the retry
/// layer has given up on, sends what was kept and then waits (until its
/// connection drops it, or the newest copy is dropped and it may read on).
/// Nothing is truncated. Read copies by hand one after another, newest first.
///
/// Once the body has sent more than `max_replay_bytes` (or says in its size hint
/// that it will), the kept chunks are let go, the copy reading goes on to the
/// end, and no copy can be made: the request is sent once. The same holds after
/// the original body fails.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use http_body_util::{BodyExt, Full};
/// use stache_resilience::retry::TeeBody;
///
/// // A boxed body cannot be copied; a `TeeBody` over it can.
/// let body = Full::new(bytes::Bytes::from("hello")).boxed();
/// let first = TeeBody::new(body, 1024);
/// let again = first.try_clone().unwrap();
/// // The copy is the newest: it reads on, and `first` would wait for it.
/// assert_eq!(again.collect().await.unwrap().to_bytes(), "hello");
/// assert_eq!(first.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
pub struct TeeBody<B> {
    shared: Arc<Shared<B>>,
    /// Which copy this is: only the newest one reads the original body.
    generation: u64,
    /// Chunks of `Shared::kept` already sent by this copy.
    position: usize,
    /// Bytes sent by this copy.
    sent: u64,
    trailers_sent: bool,
}

struct Shared<B> {
    state: Mutex<State<B>>,
    /// The original body's size hint, which every copy reports before it starts.
    hint: SizeHint,
    max_bytes: usize,
}

struct State<B> {
    /// What is left of the original body; `None` once it has ended or failed.
    rest: Option<Pin<Box<B>>>,
    /// The chunks read so far, while they fit under the cap.
    kept: Vec<Bytes>,
    kept_bytes: usize,
    /// Chunks read from the original, kept or not.
    chunks_read: usize,
    trailers: Option<HeaderMap>,
    ended: bool,
    /// More than `max_bytes` was read: `kept` was let go.
    capped: bool,
    /// The original body returned an error.
    failed: bool,
    /// The copy allowed to read the original: the newest, or 0 once that one
    /// was dropped before the end (then any copy that sent all it read may).
    reader: u64,
    /// An older copy waiting to read on, woken when the reader is dropped.
    waiting: Option<std::task::Waker>,
    copies: u64,
}

impl<B> State<B> {
    /// Counts a chunk read from the body, and keeps it for copies unless the
    /// body has outgrown `max_bytes` (then nothing more is kept).
    fn keep(&mut self, chunk: &Bytes, max_bytes: usize) {
        self.chunks_read += 1;
        if self.capped {
            return;
        }
        self.kept_bytes = self.kept_bytes.saturating_add(chunk.len());
        if self.kept_bytes > max_bytes {
            self.capped = true;
            self.kept = Vec::new();
        } else {
            self.kept.push(chunk.clone());
        }
    }
}

impl<B: Body> TeeBody<B> {
    /// Wraps `body`, keeping at most `max_bytes` of it for copies.
    pub fn new(body: B, max_bytes: usize) -> Self {
        let hint = body.size_hint();
        let ended = body.is_end_stream();
        let capped = hint.lower() > max_bytes as u64;
        TeeBody {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    rest: (!ended).then(|| Box::pin(body)),
                    kept: Vec::new(),
                    kept_bytes: 0,
                    chunks_read: 0,
                    trailers: None,
                    ended,
                    capped,
                    failed: false,
                    reader: 1,
                    waiting: None,
                    copies: 1,
                }),
                hint,
                max_bytes,
            }),
            generation: 1,
            position: 0,
            sent: 0,
            trailers_sent: false,
        }
    }
}

impl<B> TeeBody<B> {
    /// A copy that sends the whole body again, or `None` once the body has
    /// outgrown its cap or failed. The copy becomes the one that reads on: older
    /// copies stop after what was kept.
    pub fn try_clone(&self) -> Option<Self> {
        let mut state = lock(&self.shared.state);
        if state.capped || state.failed {
            return None;
        }
        state.copies += 1;
        state.reader = state.copies;
        Some(TeeBody {
            shared: self.shared.clone(),
            generation: state.copies,
            position: 0,
            sent: 0,
            trailers_sent: false,
        })
    }

    /// A copy that is never sent, only copied: it never takes the reading over
    /// from the copies that are sent.
    pub(crate) fn handle(&self) -> Self {
        TeeBody {
            shared: self.shared.clone(),
            generation: 0,
            position: 0,
            sent: 0,
            trailers_sent: false,
        }
    }

    /// Whether a copy can still be made: the body has not outgrown its cap, nor
    /// failed.
    pub fn is_replayable(&self) -> bool {
        let state = lock(&self.shared.state);
        !(state.capped || state.failed)
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let shared = &*this.shared;
        let mut state = lock(&shared.state);
        // What was kept first.
        if !state.capped {
            if let Some(chunk) = state.kept.get(this.position) {
                this.position += 1;
                this.sent += chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
            }
        }
        if state.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(trailers) = &state.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                }
            }
            return Poll::Ready(None);
        }
        // Only the newest copy, having sent every chunk read so far, reads on.
        // Any other waits: its attempt was given up on, and sending less than
        // the whole body, or a body out of order, would be worse than nothing.
        if this.position != state.chunks_read || this.generation == 0 {
            return Poll::Pending;
        }
        if state.reader == 0 {
            state.reader = this.generation;
        } else if state.reader != this.generation {
            state.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        loop {
            let Some(rest) = state.rest.as_mut() else {
                return Poll::Pending;
            };
            let frame = match rest.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    state.ended = true;
                    state.rest = None;
                    this.trailers_sent = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error))) => {
                    state.failed = true;
                    state.rest = None;
                    state.kept = Vec::new();
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let frame = match frame.into_data() {
                Ok(mut data) => {
                    let chunk = data.copy_to_bytes(data.remaining());
                    this.position += 1;
                    this.sent += chunk.len() as u64;
                    state.keep(&chunk, shared.max_bytes);
                    Frame::data(chunk)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        state.trailers = Some(trailers.clone());
                        state.ended = true;
                        state.rest = None;
                        this.trailers_sent = true;
                        Frame::trailers(trailers)
                    }
                    // A kind of frame this version of http-body does not know:
                    // nothing to send or keep.
                    Err(_) => continue,
                },
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = lock(&self.shared.state);
        state.ended
            && (state.capped || self.position >= state.kept.len())
            && (self.trailers_sent || state.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        // What is left for this copy: the original's hint less what it sent.
        let hint = &self.shared.hint;
        let mut left = SizeHint::new();
        left.set_lower(hint.lower().saturating_sub(self.sent));
        if let Some(upper) = hint.upper() {
            left.set_upper(upper.saturating_sub(self.sent));
        }
        left
    }
}

impl<B> Drop for TeeBody<B> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if state.reader == self.generation && !state.ended {
            state.reader = 0;
            if let Some(waiting) = state.waiting.take() {
                waiting.wake();
            }
        }
    }
}

impl<B> fmt::Debug for TeeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeeBody")
            .field("generation", &self.generation)
            .field("sent", &self.sent)
            .field("max_bytes", &self.shared.max_bytes)
            .finish_non_exhaustive()
    }
}
