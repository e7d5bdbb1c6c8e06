//! stream_post: NDJSON lines as they arrive, bounded in time and size.

mod support;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stache_resilience::client::StreamResponse;
use stache_resilience::{HttpClient, HttpClientConfig};
use support::{Reply, Server};

fn config(url: &str) -> HttpClientConfig {
    let mut c = HttpClientConfig::new(url);
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(5);
    c.stream_idle_timeout = Duration::from_millis(100);
    c
}

fn chunks(parts: &[&'static str]) -> Reply {
    Reply::Chunks {
        status: 200,
        chunks: parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect(),
        gap: Duration::from_millis(1),
    }
}

#[tokio::test]
async fn lines_are_returned_as_they_arrive_whatever_the_chunking() {
    let server = Server::replies(vec![chunks(&[
        "{\"response\":\"Hel\"}\n{\"resp",
        "onse\":\"lo\"}\r\n\n",
        "{\"response\":\"!\",\"done\":true}",
    ])])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client
        .stream_post("/api/generate", &json!({"prompt": "hi", "stream": true}))
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.request_id().as_str(), server.seen()[0].request_id());
    assert_eq!(server.seen()[0].headers["accept"], "application/x-ndjson");
    let mut tokens = String::new();
    while let Some(line) = stream.next_line().await.unwrap() {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        tokens.push_str(value["response"].as_str().unwrap());
    }
    assert_eq!(tokens, "Hello!");
    assert_eq!(stream.next_line().await.unwrap(), None);
}

async fn next(stream: &mut StreamResponse) -> Option<Result<String, stache_resilience::Error>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *stream), cx)).await
}

#[tokio::test]
async fn the_response_is_also_a_stream_of_lines() {
    let server = Server::replies(vec![chunks(&["a\nb\n", "c\n"])]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    let mut lines = Vec::new();
    while let Some(line) = next(&mut stream).await {
        lines.push(line.unwrap());
    }
    assert_eq!(lines, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_stalled_stream_fails_after_the_idle_timeout_and_frees_its_slot() {
    let server = Server::replies(vec![Reply::Stall {
        status: 200,
        first: Bytes::from_static(b"{\"n\":1}\n"),
    }])
    .await;
    let mut c = config(&server.url());
    c.max_connections = 1;
    c.max_keepalive_connections = 1;
    let client = HttpClient::new(c).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    assert_eq!(
        client.stats().free_connection_slots,
        0,
        "the stream holds its slot"
    );
    assert_eq!(
        stream.next_line().await.unwrap().as_deref(),
        Some("{\"n\":1}")
    );
    let started = std::time::Instant::now();
    let err = stream.next_line().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("stream_idle_timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The stream is over, and says so on every later read: never a clean end.
    let again = stream.next_line().await.unwrap_err();
    assert!(again.is_timeout(), "{again:?}");
    assert!(
        again
            .to_string()
            .starts_with("stream already failed: stream sent no data"),
        "{again}"
    );
    drop(stream);
    assert_eq!(client.stats().free_connection_slots, 1);
}

#[tokio::test]
async fn an_endless_line_and_invalid_utf8_are_body_errors() {
    let endless = "x".repeat(200);
    let server = Server::replies(vec![Reply::Chunks {
        status: 200,
        chunks: vec![Bytes::from(endless.clone()), Bytes::from(endless)],
        gap: Duration::ZERO,
    }])
    .await;
    let mut c = config(&server.url());
    c.max_line_bytes = 64;
    let client = HttpClient::new(c).unwrap();
    // The first line is read before the stream is handed over, so its error is
    // the call's; it is the server's answer and not retried.
    let err = client.stream_post("/x", &json!({})).await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert!(err.to_string().contains("max_line_bytes"), "{err}");
    assert_eq!(server.hits(), 1);

    let server = Server::replies(vec![Reply::Chunks {
        status: 200,
        chunks: vec![Bytes::from_static(b"ok\n\xff\xfe\n")],
        gap: Duration::ZERO,
    }])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    assert_eq!(stream.next_line().await.unwrap().as_deref(), Some("ok"));
    assert!(stream.next_line().await.unwrap_err().is_body());
}

#[tokio::test]
async fn failures_before_the_headers_are_retried_and_errors_keep_their_body() {
    let server = Server::replies(vec![Reply::Status(503), chunks(&["done\n"])]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    assert_eq!(stream.next_line().await.unwrap().as_deref(), Some("done"));
    assert_eq!(server.hits(), 2);

    let server = Server::replies(vec![Reply::json(400, r#"{"error":"bad model"}"#)]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client.stream_post("/x", &json!({})).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::BAD_REQUEST));
    assert_eq!(err.body_text(), Some(r#"{"error":"bad model"}"#));
    assert_eq!(client.stats().free_connection_slots, 50);
}

#[tokio::test]
async fn the_timeout_covers_the_wait_for_headers() {
    let server = Server::replies(vec![Reply::Hang]).await;
    let mut c = config(&server.url());
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    let err = client
        .stream_post("/x", &json!({}))
        .timeout(Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.to_string(), "request timed out after 30ms (timeout)");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_of_blank_lines_ends_at_the_deadline() {
    // A blank line every 100 ms: the idle timeout never fires.
    let server = Server::replies(vec![Reply::Chunks {
        status: 200,
        chunks: vec![Bytes::from_static(b"\n"); 100_000],
        gap: Duration::from_millis(100),
    }])
    .await;
    let mut c = config(&server.url());
    c.stream_idle_timeout = Duration::from_millis(500);
    let client = HttpClient::new(c).unwrap();
    let started = tokio::time::Instant::now();
    let err = client
        .stream_post("/x", &json!({}))
        .timeout(Duration::from_millis(500))
        .deadline(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.is_deadline() && err.is_timeout(), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(server.hits(), 1, "a deadline is never retried");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_every_line_until_the_last() {
    let server = Server::replies(vec![Reply::Chunks {
        status: 200,
        chunks: (0..100)
            .map(|n| Bytes::from(format!("{{\"n\":{n}}}\n")))
            .collect(),
        gap: Duration::from_millis(100),
    }])
    .await;
    let mut c = config(&server.url());
    c.stream_idle_timeout = Duration::from_secs(1);
    c.retry.total_timeout = Some(Duration::from_millis(550));
    let client = HttpClient::new(c).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    let mut lines = 0;
    let err = loop {
        match stream.next_line().await {
            Ok(Some(_)) => lines += 1,
            Ok(None) => panic!("the stream ended before its deadline"),
            Err(e) => break e,
        }
    };
    assert_eq!(lines, 5, "lines at 100..500 ms");
    assert!(err.is_deadline(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "deadline of 550ms exceeded while streaming (after 40 bytes)"
    );
    assert_eq!(err.stream_cut().map(|c| c.bytes()), Some(40));
    // Every later read says the same, never a clean end.
    let again = stream.next_line().await.unwrap_err();
    assert!(again.is_deadline(), "{again:?}");
}

#[tokio::test]
async fn blank_lines_count_towards_max_line_bytes() {
    let server = Server::replies(vec![Reply::Chunks {
        status: 200,
        chunks: vec![Bytes::from_static(b"\n\n\n\n\n\n\n\n\n\n"); 10],
        gap: Duration::ZERO,
    }])
    .await;
    let mut c = config(&server.url());
    c.max_line_bytes = 64;
    let client = HttpClient::new(c).unwrap();
    let err = client.stream_post("/x", &json!({})).await.unwrap_err();
    assert!(
        err.is_body() && err.to_string().contains("max_line_bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn max_stream_bytes_caps_the_whole_stream() {
    let server = Server::replies(vec![Reply::Chunks {
        status: 200,
        chunks: vec![Bytes::from_static(b"{\"token\":\"abc\"}\n"); 100],
        gap: Duration::ZERO,
    }])
    .await;
    let mut c = config(&server.url());
    c.max_stream_bytes = 16 * 10;
    let client = HttpClient::new(c).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    let mut lines = 0;
    let err = loop {
        match stream.next_line().await {
            Ok(Some(_)) => lines += 1,
            Ok(None) => panic!("the stream was not capped"),
            Err(e) => break e,
        }
    };
    assert!(lines <= 10, "{lines}");
    assert!(
        err.is_body() && err.to_string().contains("max_stream_bytes (160)"),
        "{err}"
    );
    assert!(stream.next_line().await.unwrap_err().is_body());
}

#[tokio::test]
async fn a_failure_before_the_first_line_is_retried_and_one_after_it_is_not() {
    // Headers, then nothing: idle before the first line. Sent again.
    let server = Server::replies(vec![
        Reply::Stall {
            status: 200,
            first: Bytes::new(),
        },
        Reply::Break {
            status: 200,
            first: Bytes::from_static(b"{\"partial\""),
        },
        chunks(&["{\"n\":1}\n", "{\"n\":2}\n"]),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    assert_eq!(
        stream.next_line().await.unwrap().as_deref(),
        Some("{\"n\":1}")
    );
    assert_eq!(
        stream.next_line().await.unwrap().as_deref(),
        Some("{\"n\":2}")
    );
    assert_eq!(stream.next_line().await.unwrap(), None);
    assert_eq!(server.hits(), 3);

    // A first line delivered, then a break: the error ends the stream; no resend,
    // so no token is delivered twice.
    let server = Server::replies(vec![
        Reply::Break {
            status: 200,
            first: Bytes::from_static(b"{\"n\":1}\n{\"n\""),
        },
        chunks(&["{\"n\":1}\n"]),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    assert_eq!(
        stream.next_line().await.unwrap().as_deref(),
        Some("{\"n\":1}")
    );
    let err = stream.next_line().await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    let again = stream.next_line().await.unwrap_err();
    assert!(
        again.is_body() && again.to_string().starts_with("stream already failed"),
        "{again}"
    );
    assert_eq!(server.hits(), 1);

    // Not idempotent: a break before the first line is not sent again either.
    let server = Server::replies(vec![
        Reply::Break {
            status: 200,
            first: Bytes::new(),
        },
        chunks(&["{\"n\":1}\n"]),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let err = client
        .stream_post("/x", &json!({}))
        .idempotent(false)
        .await
        .unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert_eq!(server.hits(), 1);
}

/// An event stream with every kind of line end, split into one-byte chunks:
/// a GET streamed with `.stream()`, read with `next_event` although the server
/// names no content type, then as a `Stream` of events.
#[tokio::test]
async fn server_sent_events_cut_at_every_byte_come_out_whole() {
    let text = ": hello\r\n\r\nevent: delta\r\ndata: {\"t\":\"a\"}\r\nid: 1\r\n\r\n\
                data: {\"t\":\"b\"}\rdata: second line\r\rretry: 250\n\
                data: [DONE]\n\n";
    let bytes: Vec<Bytes> = text
        .as_bytes()
        .iter()
        .map(|b| Bytes::copy_from_slice(&[*b]))
        .collect();
    let reply = Reply::Chunks {
        status: 200,
        chunks: bytes,
        gap: Duration::ZERO,
    };
    let server = Server::replies(vec![reply]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();

    let mut stream = client.get("/events").stream().await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await.unwrap() {
        events.push(event);
    }
    let seen: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .map(|e| (e.event(), e.data(), e.id()))
        .collect();
    assert_eq!(
        seen,
        [
            ("delta", "{\"t\":\"a\"}", Some("1")),
            ("message", "{\"t\":\"b\"}\nsecond line", Some("1")),
            ("message", "[DONE]", Some("1")),
        ]
    );
    assert_eq!(events[2].retry(), Some(Duration::from_millis(250)));
    assert_eq!(server.seen()[0].method, "GET");

    // The same as a `Stream` of events.
    use futures_util::StreamExt;
    let stream = client.get("/events").stream().await.unwrap();
    let data: Vec<String> = stream
        .events()
        .map(|e| e.unwrap().data().to_owned())
        .collect()
        .await;
    assert_eq!(
        data,
        ["{\"t\":\"a\"}", "{\"t\":\"b\"}\nsecond line", "[DONE]"]
    );
}

#[tokio::test]
async fn an_event_larger_than_max_line_bytes_ends_the_stream_with_an_error() {
    let big = format!("data: {}\ndata: {}\n\n", "x".repeat(40), "y".repeat(40));
    let server = Server::replies(vec![Reply::Full {
        status: 200,
        headers: vec![("content-type", "text/event-stream".into())],
        body: Bytes::from(big),
    }])
    .await;
    let mut config = config(&server.url());
    config.max_line_bytes = 64;
    let client = HttpClient::new(config).unwrap();
    let mut stream = client.get("/events").stream().await.unwrap();
    let error = stream.next_event().await.unwrap_err();
    assert!(error.is_body(), "{error:?}");
    assert!(error.to_string().contains("max_line_bytes"), "{error}");
    assert!(stream.next_event().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_stream_makes_at_most_max_retries_plus_one_attempts_whatever_fails() {
    // 503, 503, then a 200 that breaks before its first line, for ever: the
    // retry layer alone retries the stream, so 3 attempts in all (not 3 × 3).
    let server = Server::start(|n, _| match n {
        0 | 1 => Reply::Status(503),
        _ => Reply::Break {
            status: 200,
            first: Bytes::from_static(b"data: {\"tok"),
        },
    })
    .await;
    let mut c = config(&server.url());
    c.max_retries = 2;
    let client = HttpClient::new(c).unwrap();
    let err = client.stream_post("/x", &json!({})).await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert_eq!(server.hits(), 3, "max_retries + 1 attempts");
    let stats = client.stats();
    assert_eq!((stats.attempts, stats.retries), (3, 2), "{stats:?}");

    // The same failures, one more retry allowed: the fourth attempt answers,
    // and the stream starts with its first line, nothing of the broken ones.
    let server = Server::start(|n, _| match n {
        0 | 1 => Reply::Status(503),
        2 => Reply::Break {
            status: 200,
            first: Bytes::from_static(b"data: {\"tok"),
        },
        _ => chunks(&["data: {\"token\":\"hi\"}\n\n"]),
    })
    .await;
    let mut c = config(&server.url());
    c.max_retries = 3;
    let client = HttpClient::new(c).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    let event = stream.next_event().await.unwrap().expect("an event");
    assert_eq!(event.data(), "{\"token\":\"hi\"}");
    assert_eq!(server.hits(), 4);
}

#[tokio::test(start_paused = true)]
async fn blank_lines_before_a_break_do_not_end_the_retry_window() {
    // A keep-alive blank line, then a cut: nothing was delivered, so the call
    // is sent again.
    let server = Server::replies(vec![
        Reply::Break {
            status: 200,
            first: Bytes::from_static(b"\n\r\n"),
        },
        chunks(&["{\"n\":1}\n"]),
    ])
    .await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let mut stream = client.stream_post("/x", &json!({})).await.unwrap();
    assert_eq!(
        stream.next_line().await.unwrap().as_deref(),
        Some("{\"n\":1}")
    );
    assert_eq!(server.hits(), 2);
}
