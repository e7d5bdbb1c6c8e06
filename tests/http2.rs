//! HTTP/2: negotiated over TLS, with prior knowledge over plain TCP (h2c),
//! multiplexed over one connection, and streams a server refused or dropped
//! going away sent again, even for calls that are not idempotent.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use stache_resilience::client::HttpVersion;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use support::{Loopback, bind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(url: &str, version: HttpVersion) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.http_version = version;
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    config.default_timeout = Duration::from_secs(5);
    config
}

/// Answers with the HTTP version the request came in on, after `delay`.
async fn answer_version(
    req: hyper::Request<Incoming>,
    delay: Duration,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    tokio::time::sleep(delay).await;
    let body = format!(r#"{{"version":"{:?}"}}"#, req.version());
    Ok(hyper::Response::new(Full::new(Bytes::from(body))))
}

/// A plain-TCP server that speaks HTTP/2 only (h2c, prior knowledge).
async fn h2c_server(delay: Duration) -> Loopback {
    Loopback::serve(bind().await, move |tcp| async move {
        let service = hyper::service::service_fn(move |req| answer_version(req, delay));
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    })
}

fn version_of(response: &stache_resilience::client::Response) -> String {
    let value: serde_json::Value = response.json().unwrap();
    value["version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn prior_knowledge_speaks_h2c_to_an_http2_only_server() {
    let server = h2c_server(Duration::ZERO).await;
    let client = HttpClient::new(config(&server.url(), HttpVersion::Http2PriorKnowledge)).unwrap();
    let response = client.get("/v1/models").await.unwrap();
    assert_eq!(version_of(&response), "HTTP/2.0");
}

#[tokio::test]
async fn an_http2_only_server_refuses_http1_and_says_so() {
    let server = h2c_server(Duration::ZERO).await;
    let mut config = config(&server.url(), HttpVersion::Auto);
    config.max_retries = 0;
    let client = HttpClient::new(config).unwrap();
    let error = client.get("/v1/models").await.unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::Transport | ErrorKind::Body),
        "{error:?}"
    );
}

#[tokio::test]
async fn concurrent_calls_share_one_http2_connection() {
    let server = h2c_server(Duration::from_millis(50)).await;
    let client = HttpClient::new(config(&server.url(), HttpVersion::Http2PriorKnowledge)).unwrap();
    let calls: Vec<_> = (0..32)
        .map(|i| tokio::spawn(client.get(format!("/item/{i}")).send()))
        .collect();
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(version_of(&response), "HTTP/2.0");
    }
    assert_eq!(server.connections(), 1);
}

#[cfg(feature = "rustls")]
mod tls {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A TLS server offering `h2` and `http/1.1` by ALPN, answering on the
    /// protocol the handshake agreed.
    async fn alpn_server() -> (Loopback, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let server = Loopback::serve(bind().await, move |tcp| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(|req| answer_version(req, Duration::ZERO));
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            }
        });
        (server, certified.cert.pem())
    }

    #[tokio::test]
    async fn auto_negotiates_h2_over_tls_and_http1_only_does_not() {
        let (server, cert) = alpn_server().await;
        let url = format!("https://{}", server.addr);
        for (version, expected) in [
            (HttpVersion::Auto, "HTTP/2.0"),
            (HttpVersion::Http2PriorKnowledge, "HTTP/2.0"),
            (HttpVersion::Http1Only, "HTTP/1.1"),
        ] {
            let mut config = config(&url, version);
            config.extra_root_certificates = vec![cert.clone().into_bytes()];
            let client = HttpClient::new(config).unwrap();
            let response = client.get("/secure").await.unwrap();
            assert_eq!(version_of(&response), expected, "{version:?}");
        }
    }
}

/// An h2 server whose first `refused` streams are reset with `REFUSED_STREAM`
/// before anything is read of them; the others are answered. Counts the
/// streams it saw.
async fn refusing_server(refused: usize) -> (Loopback, Arc<AtomicUsize>) {
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    let server = Loopback::serve(bind().await, move |tcp| {
        let seen = seen.clone();
        async move {
            let Ok(mut connection) = h2::server::handshake(tcp).await else {
                return;
            };
            while let Some(Ok((_request, mut respond))) = connection.accept().await {
                if seen.fetch_add(1, Ordering::SeqCst) < refused {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                    continue;
                }
                let response = http::Response::new(());
                if let Ok(mut body) = respond.send_response(response, false) {
                    let _ = body.send_data(Bytes::from_static(br#"{"ok":true}"#), true);
                }
            }
        }
    });
    (server, streams)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_even_for_a_call_that_is_not_idempotent() {
    let (server, streams) = refusing_server(2).await;
    let client = HttpClient::new(config(&server.url(), HttpVersion::Http2PriorKnowledge)).unwrap();
    let response = client
        .post("/v1/charges", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(streams.load(Ordering::SeqCst), 3);
}

/// Writes one HTTP/2 frame.
async fn frame(tcp: &mut tokio::net::TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut head = [0u8; 9];
    head[..3].copy_from_slice(&len.to_be_bytes()[1..]);
    head[3] = kind;
    head[4] = flags;
    head[5..].copy_from_slice(&stream.to_be_bytes());
    tcp.write_all(&head).await.unwrap();
    tcp.write_all(payload).await.unwrap();
}

/// One frame as a frame-level server reads it.
struct ReadFrame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Reads a client's frames, after its 24-byte preface.
struct FrameReader {
    input: Vec<u8>,
    at: usize,
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            input: Vec::new(),
            at: 24,
        }
    }

    /// The next whole frame, or `None` once the connection has closed.
    async fn next(&mut self, tcp: &mut tokio::net::TcpStream) -> Option<ReadFrame> {
        loop {
            let at = self.at;
            if self.input.len() >= at + 9 {
                let input = &self.input;
                let len = u32::from_be_bytes([0, input[at], input[at + 1], input[at + 2]]);
                let end = at + 9 + len as usize;
                if input.len() >= end {
                    self.at = end;
                    return Some(ReadFrame {
                        kind: input[at + 3],
                        flags: input[at + 4],
                        stream: u32::from_be_bytes([
                            input[at + 5] & 0x7f,
                            input[at + 6],
                            input[at + 7],
                            input[at + 8],
                        ]),
                        payload: input[at + 9..end].to_vec(),
                    });
                }
            }
            let mut buf = [0u8; 4096];
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// A server whose first connection, once the client's first request has
/// arrived, says `GOAWAY` with last stream 0 (NO_ERROR: "I processed none of
/// your streams") and closes; later connections are answered by a real h2
/// server. Counts the requests answered.
async fn going_away_server() -> (Loopback, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (seen, done) = (connections.clone(), answered.clone());
    let server = Loopback::serve(bind().await, move |mut tcp| {
        let (seen, done) = (seen.clone(), done.clone());
        async move {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                frame(&mut tcp, 0x4, 0, 0, &[]).await; // our SETTINGS
                // The client's frames, until the request's HEADERS (type 1).
                let mut reader = FrameReader::new();
                loop {
                    let Some(incoming) = reader.next(&mut tcp).await else {
                        return;
                    };
                    if incoming.kind == 0x4 && incoming.flags & 0x1 == 0 {
                        frame(&mut tcp, 0x4, 0x1, 0, &[]).await; // SETTINGS ACK
                    }
                    if incoming.kind == 0x1 {
                        break;
                    }
                }
                let mut goaway = [0u8; 8]; // last stream 0, NO_ERROR
                goaway[..4].copy_from_slice(&0u32.to_be_bytes());
                frame(&mut tcp, 0x7, 0, 0, &goaway).await;
                let _ = tcp.shutdown().await;
                return;
            }
            let Ok(mut connection) = h2::server::handshake(tcp).await else {
                return;
            };
            while let Some(Ok((_request, mut respond))) = connection.accept().await {
                done.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut body) = respond.send_response(http::Response::new(()), false) {
                    let _ = body.send_data(Bytes::from_static(b"{}"), true);
                }
            }
        }
    });
    (server, answered)
}

#[tokio::test]
async fn a_stream_a_going_away_server_did_not_process_is_sent_again() {
    let (server, answered) = going_away_server().await;
    let client = HttpClient::new(config(&server.url(), HttpVersion::Http2PriorKnowledge)).unwrap();
    let response = client
        .post("/v1/charges", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_stream_refused_after_its_head_is_not_sent_again_unless_safe_to_repeat() {
    // The head, part of the body, then RST_STREAM(REFUSED_STREAM): the head
    // proves the server acted, whatever the reset says.
    let (server, streams, _) = frame_server(|| {
        vec![
            status_200(false),
            (0x0, 0, br#"{"charged":"#.to_vec()),
            (0x3, 0, 0x7u32.to_be_bytes().to_vec()),
        ]
    })
    .await;
    let client = HttpClient::new(config(&server.url(), HttpVersion::Http2PriorKnowledge)).unwrap();
    let err = client
        .post("/v1/charges", &json!({"amount": 1}))
        .idempotent(false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body, "{err:?}");
    assert_eq!(
        streams.load(Ordering::SeqCst),
        1,
        "the charge was sent once"
    );

    // Safe to repeat: the same failure is retried (1 + max_retries attempts).
    let err = client
        .post("/v1/embeddings", &json!({"input": "a"}))
        .idempotent(true)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body, "{err:?}");
    assert_eq!(streams.load(Ordering::SeqCst), 1 + 4);
}

/// One frame: its type, flags and payload.
type Frame = (u8, u8, Vec<u8>);

/// A frame-level h2c server: answers each request, once it has arrived whole,
/// with the frames `answer` gives for its stream ID; acknowledges SETTINGS and
/// PINGs. Counts the requests (streams) and the PINGs it was sent.
async fn frame_server<F>(answer: F) -> (Loopback, Arc<AtomicUsize>, Arc<AtomicUsize>)
where
    F: Fn() -> Vec<Frame> + Clone + Send + Sync + 'static,
{
    frame_server_with(answer, false).await
}

/// [`frame_server`], whose first connection, with `first_dies`, goes silent
/// after its first answer: it reads on but never writes again (a peer that
/// died behind a connection that looks open).
async fn frame_server_with<F>(
    answer: F,
    first_dies: bool,
) -> (Loopback, Arc<AtomicUsize>, Arc<AtomicUsize>)
where
    F: Fn() -> Vec<Frame> + Clone + Send + Sync + 'static,
{
    let streams = Arc::new(AtomicUsize::new(0));
    let pings = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let counters = (streams.clone(), pings.clone());
    let server = Loopback::serve(bind().await, move |mut tcp| {
        let (streams, pings) = counters.clone();
        let answer = answer.clone();
        let dies = first_dies && connections.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let mut answered = 0;
            frame(&mut tcp, 0x4, 0, 0, &[]).await; // our SETTINGS
            let mut reader = FrameReader::new();
            while let Some(incoming) = reader.next(&mut tcp).await {
                if dies && answered > 0 {
                    continue;
                }
                let ReadFrame {
                    kind,
                    flags,
                    stream,
                    payload,
                } = incoming;
                match kind {
                    0x4 if flags & 0x1 == 0 => frame(&mut tcp, 0x4, 0x1, 0, &[]).await,
                    // HEADERS or DATA that end the request.
                    0x0 | 0x1 if flags & 0x1 != 0 => {
                        streams.fetch_add(1, Ordering::SeqCst);
                        answered += 1;
                        for (kind, flags, payload) in answer() {
                            frame(&mut tcp, kind, flags, stream, &payload).await;
                        }
                    }
                    0x6 if flags & 0x1 == 0 => {
                        pings.fetch_add(1, Ordering::SeqCst);
                        frame(&mut tcp, 0x6, 0x1, 0, &payload).await;
                    }
                    _ => {}
                }
            }
        }
    });
    (server, streams, pings)
}

/// `:status 200` (HPACK static index 8), in a HEADERS frame that ends the
/// headers and, with `end`, the stream.
fn status_200(end: bool) -> Frame {
    (0x1, if end { 0x5 } else { 0x4 }, vec![0x88])
}

#[tokio::test]
async fn an_idle_http2_connection_is_pinged_when_an_interval_is_set() {
    let (server, _, pings) = frame_server(|| vec![status_200(true)]).await;
    let mut c = config(&server.url(), HttpVersion::Http2PriorKnowledge);
    c.http2_keep_alive_interval = Some(Duration::from_millis(100));
    let client = HttpClient::new(c).unwrap();
    let response = client.get("/v1/models").await.unwrap();
    assert_eq!(response.status(), 200);
    let after_call = pings.load(Ordering::SeqCst);
    // No call in flight from here on: only an idle-time ping can arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = pings.load(Ordering::SeqCst) - after_call;
    assert!(idle >= 3, "{idle} pings in 1.5 s idle at a 100 ms interval");
}

#[tokio::test]
async fn a_connection_that_died_while_idle_is_found_before_the_next_call() {
    let (server, streams, _) = frame_server_with(|| vec![status_200(true)], true).await;
    let mut c = config(&server.url(), HttpVersion::Http2PriorKnowledge);
    c.http2_keep_alive_interval = Some(Duration::from_millis(100));
    c.http2_keep_alive_timeout = Duration::from_millis(200);
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    client.get("/v1/models").await.unwrap();
    // The first connection goes silent. Idle pings find it dead and close it.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let response = client
        .post("/v1/charges", &json!({"amount": 1}))
        .idempotent(false)
        .timeout(Duration::from_secs(2))
        .await
        .expect("the call goes on a new connection, not the dead one");
    assert_eq!(response.status(), 200);
    assert_eq!(streams.load(Ordering::SeqCst), 2);
    assert_eq!(server.connections(), 2);
}

/// A frame-level h2c server that announces `settings` (id, value pairs) and
/// never answers a request nor grants window: it counts the streams opened
/// (a HEADERS frame) and the DATA bytes received.
async fn silent_server(
    settings: &'static [(u16, u32)],
) -> (Loopback, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let streams = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let counters = (streams.clone(), received.clone());
    let server = Loopback::serve(bind().await, move |mut tcp| {
        let (streams, received) = counters.clone();
        async move {
            let payload: Vec<u8> = settings
                .iter()
                .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
                .collect();
            frame(&mut tcp, 0x4, 0, 0, &payload).await;
            let mut reader = FrameReader::new();
            while let Some(incoming) = reader.next(&mut tcp).await {
                match incoming.kind {
                    0x4 if incoming.flags & 0x1 == 0 => frame(&mut tcp, 0x4, 0x1, 0, &[]).await,
                    0x1 => {
                        streams.fetch_add(1, Ordering::SeqCst);
                    }
                    0x0 => {
                        received.fetch_add(incoming.payload.len(), Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        }
    });
    (server, streams, received)
}

/// SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_CONCURRENT_STREAMS.
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

#[tokio::test]
async fn a_body_the_peer_grants_no_window_to_ends_at_write_timeout() {
    let (server, streams, received) = silent_server(&[(INITIAL_WINDOW_SIZE, 1_000)]).await;
    let mut c = config(&server.url(), HttpVersion::Http2PriorKnowledge);
    c.write_timeout = Duration::from_millis(300);
    c.default_timeout = Duration::from_secs(10);
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    let started = std::time::Instant::now();
    let err = client
        .post("/v1/embeddings", &json!({"input": "x".repeat(100_000)}))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.to_string().contains("write_timeout"), "{err}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "ended after {took:?}, not at the write timeout"
    );
    assert_eq!(streams.load(Ordering::SeqCst), 1);
    // At most the window (the default one, until our SETTINGS were read).
    let received = received.load(Ordering::SeqCst);
    assert!(received <= 65_535, "{received} bytes of the body arrived");
}

#[tokio::test]
async fn a_stream_queued_for_a_slot_on_the_connection_ends_at_pool_timeout() {
    let (server, streams, _) = silent_server(&[(MAX_CONCURRENT_STREAMS, 1)]).await;
    let mut c = config(&server.url(), HttpVersion::Http2PriorKnowledge);
    c.pool_timeout = Duration::from_millis(300);
    c.default_timeout = Duration::from_secs(10);
    c.max_retries = 0;
    let client = HttpClient::new(c).unwrap();
    // The one stream the server allows, never answered.
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.post("/v1/slow", &json!({"n": 1})).await }
    });
    let opened = std::time::Instant::now();
    while streams.load(Ordering::SeqCst) == 0 {
        assert!(
            opened.elapsed() < Duration::from_secs(5),
            "the first stream never opened"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let err = client
        .post("/v1/queued", &json!({"n": 2}))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::PoolTimeout, "{err:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "ended after {took:?}, not at the pool timeout"
    );
    assert_eq!(
        streams.load(Ordering::SeqCst),
        1,
        "the queued stream never opened"
    );
    first.abort();
}
