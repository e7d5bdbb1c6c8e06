//! [`TeeBody`] on its own, and the retry layer over bodies it cannot copy.
#![allow(clippy::type_complexity)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::Layer;

use test_support::{Capture, call_ok};

use super::*;
use crate::classify::HttpClassifier;

type Chunk = Result<Frame<Bytes>, Infallible>;

/// A streaming body of `chunks` (its size unknown), then `trailers`.
fn stream(
    chunks: &[&'static str],
    trailers: Option<HeaderMap>,
) -> StreamBody<impl futures_core::Stream<Item = Chunk> + Send + Unpin + 'static> {
    let mut frames: Vec<Chunk> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    if let Some(trailers) = trailers {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    StreamBody::new(Frames(frames.into_iter()))
}

/// A stream over a vector, with no size hint: what a real upload looks like.
struct Frames(std::vec::IntoIter<Chunk>);

impl futures_core::Stream for Frames {
    type Item = Chunk;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Chunk>> {
        Poll::Ready(self.0.next())
    }
}

fn trailers() -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("x-checksum", "42".parse().unwrap());
    map
}

/// Everything a body sends: its data, and its trailers.
async fn read<B: Body<Data = Bytes> + Unpin>(body: B) -> (String, Option<HeaderMap>)
where
    B::Error: std::fmt::Debug,
{
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        String::from_utf8(collected.to_bytes().to_vec()).unwrap(),
        trailers,
    )
}

fn poll_once<B: Body + Unpin>(body: &mut B) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
    let waker = std::task::Waker::noop();
    std::pin::Pin::new(body).poll_frame(&mut Context::from_waker(waker))
}

#[tokio::test]
async fn a_copy_replays_what_was_sent_and_the_trailers() {
    let first = TeeBody::new(stream(&["ab", "cd"], Some(trailers())), 1024);
    let copy = first.try_clone().unwrap();
    // The copy is the newest; it reads everything itself, the first one waits.
    let (data, t) = read(copy).await;
    assert_eq!(data, "abcd");
    assert_eq!(t, Some(trailers()));
    // A copy made after the body ended replays it all, trailers included.
    let again = first.try_clone().unwrap();
    assert!(!again.is_end_stream());
    assert_eq!(read(again).await, ("abcd".to_string(), Some(trailers())));
}

#[tokio::test]
async fn a_copy_reads_on_where_an_attempt_answered_early_stopped() {
    let mut first = TeeBody::new(stream(&["ab", "cd", "ef"], None), 1024);
    // The first attempt sent one chunk before its answer came.
    match poll_once(&mut first) {
        Poll::Ready(Some(Ok(frame))) => assert_eq!(frame.into_data().unwrap(), "ab"),
        other => panic!("expected a chunk, got {other:?}"),
    }
    let copy = first.try_clone().unwrap();
    // The first attempt, given up on, no longer reads the original: it waits.
    assert!(poll_once(&mut first).is_pending());
    assert_eq!(read(copy).await.0, "abcdef");
    // What the copy read was kept, so the first one could still end whole:
    // never a body with a hole in it.
    assert_eq!(read(first).await.0, "cdef");
}

#[tokio::test]
async fn a_body_that_outgrows_its_cap_is_sent_whole_but_not_copied() {
    let first = TeeBody::new(stream(&["abc", "def", "ghi"], Some(trailers())), 5);
    let keep = first.try_clone().unwrap();
    assert!(keep.is_replayable());
    let (data, t) = read(keep).await;
    assert_eq!(data, "abcdefghi", "the reading copy goes on to the end");
    assert_eq!(t, Some(trailers()));
    assert!(!first.is_replayable());
    assert!(first.try_clone().is_none());
}

#[tokio::test]
async fn a_size_hint_over_the_cap_refuses_copies_from_the_start() {
    let body = TeeBody::new(Full::new(Bytes::from_static(b"0123456789")), 4);
    assert!(body.try_clone().is_none());
    assert_eq!(body.size_hint().exact(), Some(10));
    assert_eq!(read(body).await.0, "0123456789");
}

#[tokio::test]
async fn every_copy_reports_the_original_size() {
    let first = TeeBody::new(Full::new(Bytes::from_static(b"hello")), 64);
    let copy = first.try_clone().unwrap();
    assert_eq!(copy.size_hint().exact(), Some(5));
    assert_eq!(read(copy).await.0, "hello");
    let again = first.try_clone().unwrap();
    assert_eq!(again.size_hint().exact(), Some(5));
    let empty = TeeBody::new(Full::new(Bytes::new()), 64);
    assert!(empty.is_end_stream());
    assert!(empty.try_clone().unwrap().is_end_stream());
}

#[tokio::test]
async fn a_failed_body_is_not_copied() {
    let failing = StreamBody::new(FailAfterOne(0));
    let mut first = TeeBody::new(failing, 1024);
    assert!(matches!(poll_once(&mut first), Poll::Ready(Some(Ok(_)))));
    assert!(matches!(poll_once(&mut first), Poll::Ready(Some(Err(_)))));
    assert!(first.try_clone().is_none());
}

struct FailAfterOne(u32);

impl futures_core::Stream for FailAfterOne {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.0 += 1;
        Poll::Ready(Some(match self.0 {
            1 => Ok(Frame::data(Bytes::from_static(b"x"))),
            _ => Err(std::io::Error::other("upload broke")),
        }))
    }
}

fn config(max_replay_bytes: usize) -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_replay_bytes,
        ..RetryConfig::default()
    }
}

/// A service that answers 503 to its first `failures` attempts and 200 after;
/// it records each attempt's body as it read it, reading none of the first
/// attempt's (an answer before the upload ended).
fn upstream<B>(
    failures: u32,
) -> (
    impl tower::Service<
        http::Request<B>,
        Response = http::Response<()>,
        Error = Infallible,
        Future = impl Send,
    > + Clone,
    Arc<Mutex<Vec<String>>>,
)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Debug,
{
    upstream_reading_all(failures, false)
}

/// [`upstream`], reading the first attempt's body too when `read_first`.
fn upstream_reading_all<B>(
    failures: u32,
    read_first: bool,
) -> (
    impl tower::Service<
        http::Request<B>,
        Response = http::Response<()>,
        Error = Infallible,
        Future = impl Send,
    > + Clone,
    Arc<Mutex<Vec<String>>>,
)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Debug,
{
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let attempts = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn(move |req: http::Request<B>| {
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        async move {
            let body = if n == 0 && !read_first {
                "(unread)".to_string()
            } else {
                read(req.into_body()).await.0
            };
            seen.lock().unwrap().push(body);
            let status = if n < failures { 503 } else { 200 };
            Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap())
        }
    });
    (svc, bodies)
}

#[tokio::test(start_paused = true)]
async fn a_boxed_body_is_retried_whole() {
    let (inner, bodies) = upstream::<BoxBody<Bytes, Infallible>>(2);
    let mut svc = RetryLayer::new(config(1024))
        .classifier(HttpClassifier)
        .layer(inner);
    let body = stream(&["{\"input\":", "\"hi\"}"], None).boxed();
    let res = call_ok(&mut svc, http::Request::put("/v1").body(body).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        *bodies.lock().unwrap(),
        ["(unread)", "{\"input\":\"hi\"}", "{\"input\":\"hi\"}"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unsync_boxed_body_and_a_stream_are_retried_whole() {
    let (inner, bodies) = upstream::<UnsyncBoxBody<Bytes, Infallible>>(1);
    let mut svc = RetryLayer::new(config(1024))
        .classifier(HttpClassifier)
        .layer(inner);
    let body = stream(&["a", "b"], None).boxed_unsync();
    let res = call_ok(&mut svc, http::Request::put("/v1").body(body).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(*bodies.lock().unwrap(), ["(unread)", "ab"]);

    // A `StreamBody` goes to the inner service as a `TeeBody` over it.
    let (inner, bodies) = upstream(1);
    let mut svc = RetryLayer::new(config(1024))
        .classifier(HttpClassifier)
        .layer(inner);
    let res = call_ok(
        &mut svc,
        http::Request::put("/v1")
            .body(stream(&["c", "d"], None))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(*bodies.lock().unwrap(), ["(unread)", "cd"]);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_max_replay_bytes_is_sent_once_and_said_so_once_per_service() {
    let logs = Capture::new();
    let _guard = logs.install();
    // Known to be too big from its size hint: sent once, said once.
    let (inner, bodies) = upstream::<BoxBody<Bytes, Infallible>>(3);
    let mut svc = RetryLayer::new(config(4))
        .classifier(HttpClassifier)
        .layer(inner);
    for _ in 0..2 {
        let body = Full::new(Bytes::from_static(b"0123456789")).boxed();
        let res = call_ok(&mut svc, http::Request::put("/v1").body(body).unwrap()).await;
        assert_eq!(res.status(), 503);
    }
    assert_eq!(bodies.lock().unwrap().len(), 2, "one attempt per call");
    let said = |text: &str| {
        logs.events()
            .into_iter()
            .filter(|e| e.level == tracing::Level::WARN && e.message.contains(text))
            .count()
    };
    assert_eq!(said("larger than max_replay_bytes by its size hint"), 1);

    // Found too big as it is sent: the failed attempt is not retried, and
    // that is said once too.
    let (inner, bodies) = upstream_reading_all::<BoxBody<Bytes, Infallible>>(3, true);
    let mut svc = RetryLayer::new(config(4))
        .classifier(HttpClassifier)
        .layer(inner);
    for _ in 0..2 {
        let body = stream(&["012", "345"], None).boxed();
        let res = call_ok(&mut svc, http::Request::put("/v1").body(body).unwrap()).await;
        assert_eq!(res.status(), 503);
    }
    assert_eq!(*bodies.lock().unwrap(), ["012345", "012345"]);
    assert_eq!(said("its request body was larger than max_replay_bytes"), 1);
}

#[tokio::test]
async fn when_the_newest_copy_is_dropped_an_older_one_reads_on() {
    let mut first = TeeBody::new(stream(&["ab", "cd"], None), 1024);
    assert!(matches!(poll_once(&mut first), Poll::Ready(Some(Ok(_)))));
    let copy = first.try_clone().unwrap();
    assert!(poll_once(&mut first).is_pending(), "the copy reads on");
    drop(copy);
    assert_eq!(read(first).await.0, "cd", "the rest, after the first chunk");
}
