//! Hostile configuration and input: nothing a user or a server controls can
//! panic the process, leak a secret into a log or `Debug`, or hide the reason
//! for a failure.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use support::{Reply, Server, capture_logs};

#[test]
fn a_base_url_with_credentials_a_query_or_a_fragment_is_refused() {
    for url in [
        "http://user:hunter2@api.example.com/v1",
        "http://token@api.example.com",
        "https://api.example.com/v1?key=hunter2",
        "https://api.example.com/v1#frag",
    ] {
        let err = HttpClientConfig::new(url).validate().unwrap_err();
        assert_eq!(err.field(), "base_url", "{url}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = HttpClient::new(HttpClientConfig::new(url)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}

#[test]
fn settings_that_would_overflow_the_clock_are_refused_by_name() {
    let mut c = HttpClientConfig::new("http://127.0.0.1:1");
    c.keepalive_expiry = Duration::MAX;
    assert_eq!(c.validate().unwrap_err().field(), "keepalive_expiry");
    let mut c = HttpClientConfig::new("http://127.0.0.1:1");
    c.max_retries = u32::MAX;
    assert_eq!(c.validate().unwrap_err().field(), "max_retries");
    let mut c = HttpClientConfig::new("http://127.0.0.1:1");
    c.retry.total_timeout = Some(Duration::ZERO);
    assert_eq!(c.validate().unwrap_err().field(), "retry.total_timeout");
}

#[cfg(feature = "serde")]
#[test]
fn a_huge_duration_in_a_settings_file_is_refused_not_a_panic() {
    let config: HttpClientConfig = toml::from_str(
        r#"
        base_url = "http://127.0.0.1:1"
        keepalive_expiry = 1e19
        "#,
    )
    .expect("parses");
    assert_eq!(config.validate().unwrap_err().field(), "keepalive_expiry");
}

#[tokio::test]
async fn query_values_and_secret_headers_never_reach_a_log_or_debug() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let logs = capture_logs();
    let _guard = logs.install();
    let mut config = HttpClientConfig::new(server.url());
    for name in [
        "x-authorization",
        "x-password",
        "authentication",
        "x-session",
        "x-signature",
    ] {
        config = config.header(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static("hunter2"),
        );
    }
    let client = HttpClient::new(config).unwrap();
    client.get("/models?api_key=hunter2&limit=5").await.unwrap();
    let text = logs.text();
    assert!(
        text.contains("sending attempt"),
        "the DEBUG line was captured: {text}"
    );
    assert!(text.contains("api_key=[redacted]"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{client:?}").contains("hunter2"));
    assert!(!format!("{:?}", client.stats()).contains("hunter2"));
    // The server did get them.
    assert_eq!(server.seen()[0].headers["x-password"], "hunter2");
}

#[tokio::test]
async fn an_error_s_debug_says_why() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = HttpClient::new(HttpClientConfig::new(server.url())).unwrap();
    let err = client.get("no-slash").await.unwrap_err();
    let debug = format!("{err:?}");
    assert!(
        debug.contains("must be a path starting with '/'"),
        "{debug}"
    );
}

#[tokio::test]
async fn a_connect_that_hangs_names_connect_timeout() {
    // A listener whose accept queue is full drops new SYNs: connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) if queued.len() < 64 => queued.push(stream),
            _ => break,
        }
    }
    let mut config = HttpClientConfig::new(format!("http://{addr}"));
    config.max_retries = 0;
    config.connect_timeout = Duration::from_millis(300);
    let client = HttpClient::new(config).unwrap();
    let err = client.get("/").await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "connect timed out after 300ms (connect_timeout)"
    );
    drop((queued, listener));
}

#[tokio::test]
async fn a_peer_that_stops_reading_names_write_timeout() {
    // Accepts and never reads: the request body fills the socket buffers.
    let listener = test_support::server::bind().await;
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut config = HttpClientConfig::new(format!("http://{addr}"));
    config.max_retries = 0;
    config.write_timeout = Duration::from_millis(300);
    let client = HttpClient::new(config).unwrap();
    let big = "x".repeat(64 * 1024 * 1024);
    let err = client
        .post("/upload", &json!({ "data": big }))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "request write stalled for 300ms (write_timeout)"
    );
    holder.abort();
}

/// A field of the config and an extreme value for it.
#[derive(Debug, Clone)]
enum Extreme {
    Duration(&'static str, Duration),
    Count(&'static str, u64),
}

fn extreme() -> impl Strategy<Value = Extreme> {
    let durations = prop::sample::select(vec![
        "default_timeout",
        "retry.total_timeout",
        "connect_timeout",
        "write_timeout",
        "pool_timeout",
        "keepalive_expiry",
        "retry_base_delay",
        "retry_max_delay",
        "circuit_breaker_timeout",
        "stream_idle_timeout",
    ]);
    let lengths = prop::sample::select(vec![
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_secs(365 * 86_400),
        Duration::from_secs(365 * 86_400 + 1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ]);
    let counts = prop::sample::select(vec![
        "max_retries",
        "max_connections",
        "max_keepalive_connections",
        "circuit_breaker_threshold",
        "circuit_breaker_half_open_max_calls",
        "max_response_bytes",
        "max_line_bytes",
        "max_stream_bytes",
    ]);
    let sizes = prop::sample::select(vec![0u64, 1, 100, 101, u32::MAX as u64, u64::MAX]);
    prop_oneof![
        (durations, lengths).prop_map(|(f, d)| Extreme::Duration(f, d)),
        (counts, sizes).prop_map(|(f, n)| Extreme::Count(f, n)),
    ]
}

fn apply(config: &mut HttpClientConfig, value: &Extreme) {
    let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let u32_of = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    match *value {
        Extreme::Duration(field, d) => match field {
            "default_timeout" => config.default_timeout = d,
            "retry.total_timeout" => config.retry.total_timeout = Some(d),
            "connect_timeout" => config.connect_timeout = d,
            "write_timeout" => config.write_timeout = d,
            "pool_timeout" => config.pool_timeout = d,
            "keepalive_expiry" => config.keepalive_expiry = d,
            "retry_base_delay" => config.retry_base_delay = d,
            "retry_max_delay" => config.retry_max_delay = d,
            "circuit_breaker_timeout" => config.circuit_breaker_timeout = d,
            _ => config.stream_idle_timeout = d,
        },
        Extreme::Count(field, n) => match field {
            "max_retries" => config.max_retries = u32_of(n),
            "max_connections" => config.max_connections = usize_of(n),
            "max_keepalive_connections" => config.max_keepalive_connections = usize_of(n),
            "circuit_breaker_threshold" => config.circuit_breaker_threshold = u32_of(n),
            "circuit_breaker_half_open_max_calls" => {
                config.circuit_breaker_half_open_max_calls = u32_of(n)
            }
            "max_response_bytes" => config.max_response_bytes = usize_of(n),
            "max_line_bytes" => config.max_line_bytes = usize_of(n),
            _ => config.max_stream_bytes = n,
        },
    }
}

/// Panics anywhere in this process since the hook was installed, caught ones
/// included: a panic in a task of hyper-util's pool never reaches the caller.
fn panics() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            COUNT.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    COUNT.load(Ordering::SeqCst)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn no_extreme_setting_panics_a_client_or_its_call(values in prop::collection::vec(extreme(), 1..4)) {
        let before = panics();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let server = Server::replies(vec![Reply::Status(503), Reply::json(200, "{}")]).await;
            let mut config = HttpClientConfig::new(server.url());
            for value in &values {
                apply(&mut config, value);
            }
            match HttpClient::new(config) {
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Config, "{}", e),
                Ok(client) => {
                    // Bounded by its deadline whatever the settings: the call ends.
                    let call = client.get("/").deadline(Duration::from_millis(500));
                    let ended = tokio::time::timeout(Duration::from_secs(10), call).await;
                    prop_assert!(ended.is_ok(), "{:?}: the call did not end", values);
                    let streamed = client.stream_post("/", &json!({})).deadline(Duration::from_millis(500));
                    let ended = tokio::time::timeout(Duration::from_secs(10), streamed).await;
                    prop_assert!(ended.is_ok(), "{:?}: the stream did not end", values);
                }
            }
            Ok(())
        })?;
        // Let the pool's background tasks run their timers once more.
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
        drop(runtime);
        prop_assert_eq!(panics(), before, "{:?} panicked somewhere", values);
    }
}
