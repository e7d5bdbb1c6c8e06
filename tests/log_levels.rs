//! With a subscriber that takes nothing below `WARN` (`RUST_LOG=warn`), every
//! `WARN` line of a call still names its request and provider: the `request`
//! span is enabled whenever the call's events are.
//!
//! A binary of its own: it installs the process's one global subscriber, a
//! plain `fmt` one at `WARN`, as an application would.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stache_resilience::{HttpClient, HttpClientConfig};
use support::{Reply, Server};

/// Log output, kept for the test to read.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn warn_lines_carry_the_request_id_and_provider_at_warn_level() {
    let output = Output::default();
    let writer = output.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let server = Server::replies(vec![Reply::Status(503)]).await;
    let mut config = HttpClientConfig::new(server.url());
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    config.circuit_breaker_threshold = 2;
    let client = HttpClient::for_provider("llm", config).unwrap();
    for _ in 0..3 {
        assert!(client.get("/v1/models").await.is_err());
    }

    let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
    support::assert_warn_lines_name_their_call(
        &text,
        "llm",
        &["Giving up", "circuit breaker opened", "rejecting request"],
    );
}
