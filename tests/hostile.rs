//! Hostile or broken servers get a clear error, never a panic or unbounded
//! memory: raw TCP answers that a well-behaved server would never send.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{Loopback, read_request};
use tokio::io::AsyncWriteExt;

/// Answers every request with `answer`, byte for byte, then closes the
/// connection. Counts the requests it read.
async fn raw_server(answer: Vec<u8>) -> (Loopback, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let answer = Arc::new(answer);
    let server = Loopback::start(move |mut stream| {
        let (answer, counter) = (answer.clone(), counter.clone());
        async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
        }
    })
    .await;
    (server, hits)
}

fn client(url: &str) -> HttpClient {
    let mut config = HttpClientConfig::new(url);
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(4);
    config.default_timeout = Duration::from_secs(2);
    HttpClient::new(config).unwrap()
}

#[tokio::test]
async fn a_truncated_chunked_body_is_a_body_error_and_is_retried() {
    let (server, hits) =
        raw_server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec())
            .await;
    let err = client(&server.url())
        .post("/x", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body, "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 4, "broken bodies are retried");
}

#[tokio::test]
async fn a_content_length_that_lies_is_a_body_error() {
    let (server, hits) =
        raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this".to_vec()).await;
    let err = client(&server.url()).get("/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body, "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_made_up_status_is_a_status_error_and_counts_as_a_failure() {
    let (server, hits) =
        raw_server(b"HTTP/1.1 599 Made Up\r\ncontent-length: 5\r\n\r\noops!".to_vec()).await;
    let client = client(&server.url());
    let err = client.get("/x").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(599));
    assert_eq!(err.body_text(), Some("oops!"));
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(client.circuit_breaker().stats().failure_count, 1);
}

#[tokio::test]
async fn a_broken_status_line_is_a_transport_error() {
    let (server, _) = raw_server(b"HTTP/1.1 abc nonsense\r\n\r\n".to_vec()).await;
    let err = client(&server.url()).get("/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
}

#[tokio::test]
async fn a_header_bomb_is_refused_without_buffering_it() {
    let mut answer = b"HTTP/1.1 200 OK\r\nx-bomb: ".to_vec();
    answer.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    answer.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let (server, _) = raw_server(answer).await;
    let err = client(&server.url()).get("/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
}

#[tokio::test]
async fn odd_retry_after_values_are_ignored_or_capped() {
    // Negative and garbage: ignored, the usual backoff applies.
    for value in ["-5", "soon", "1.5", "Wed, 99 Oct 2015 07:28:00 GMT"] {
        let answer =
            format!("HTTP/1.1 503 Busy\r\nretry-after: {value}\r\ncontent-length: 0\r\n\r\n");
        let (server, hits) = raw_server(answer.into_bytes()).await;
        let err = client(&server.url()).get("/x").await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
        assert_eq!(err.retry_after(), None, "{value}");
        assert_eq!(hits.load(Ordering::SeqCst), 4, "{value}: retried as usual");
    }
    // Huge: more than the cap, so the answer is returned at once.
    let answer =
        b"HTTP/1.1 429 Slow\r\nretry-after: 99999999999999999999999\r\ncontent-length: 0\r\n\r\n";
    let (server, hits) = raw_server(answer.to_vec()).await;
    let err = client(&server.url()).get("/x").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::MAX));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // A date in the past: retry now.
    let answer = b"HTTP/1.1 503 Busy\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\ncontent-length: 0\r\n\r\n";
    let (server, hits) = raw_server(answer.to_vec()).await;
    let err = client(&server.url()).get("/x").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

/// A chunked answer: `pieces` as separate chunks, then a trailer.
fn chunked(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in pieces {
        answer.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        answer.extend_from_slice(piece);
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"0\r\nx-trailer: done\r\n\r\n");
    answer
}

#[tokio::test]
async fn bodies_in_many_chunks_are_read_whole_and_in_order() {
    // 40 chunks of different sizes (1 to 40 bytes, each of its own letter), so a
    // lost, doubled or reordered chunk changes the result.
    let pieces: Vec<Vec<u8>> = (0..40u8)
        .map(|i| vec![b'a' + i % 26; usize::from(i) + 1])
        .collect();
    let expected: Vec<u8> = pieces.concat();
    let (server, _) = raw_server(chunked(&pieces)).await;
    let response = client(&server.url()).post("/x", &json!({})).await.unwrap();
    assert_eq!(response.bytes().as_ref(), expected.as_slice());

    // A body with a length, large enough to arrive in several reads.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut answer =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", big.len()).into_bytes();
    answer.extend_from_slice(&big);
    let (server, _) = raw_server(answer).await;
    let response = client(&server.url()).post("/x", &json!({})).await.unwrap();
    assert_eq!(response.bytes().len(), big.len());
    assert!(
        response.bytes().as_ref() == big.as_slice(),
        "the bytes differ"
    );

    // An empty body, chunked or not.
    let (server, _) = raw_server(chunked(&[])).await;
    assert!(
        client(&server.url())
            .post("/x", &json!({}))
            .await
            .unwrap()
            .bytes()
            .is_empty()
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_whether_its_length_is_known_or_not() {
    let limited = |url: &str| {
        let mut config = HttpClientConfig::new(url);
        config.max_response_bytes = 100;
        HttpClient::new(config).unwrap()
    };
    // Announced: refused at the header, not retried.
    let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 101\r\n\r\n".to_vec();
    answer.extend_from_slice(&[b'x'; 101]);
    let (server, hits) = raw_server(answer).await;
    let err = limited(&server.url())
        .post("/x", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body, "{err:?}");
    assert!(err.to_string().contains("max_response_bytes"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Chunked: refused once the chunks add up to more than the limit.
    let (server, _) = raw_server(chunked(&[vec![b'x'; 60], vec![b'y'; 41]])).await;
    let err = limited(&server.url())
        .post("/x", &json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_response_bytes"), "{err}");

    // Exactly at the limit is fine.
    let (server, _) = raw_server(chunked(&[vec![b'x'; 60], vec![b'y'; 40]])).await;
    let response = limited(&server.url()).post("/x", &json!({})).await.unwrap();
    assert_eq!(response.bytes().len(), 100);
}
