//! Behind a real nginx (Debian's package, started on a loopback port): an
//! upstream that reads a POST and never answers makes nginx answer 504. A call
//! that is not safe to repeat is then executed once, not once per attempt.

use std::time::Duration;

use serde_json::json;
use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::nginx::Nginx;
use test_support::server::{Reply, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_504_from_nginx_does_not_replay_a_post_that_the_upstream_read() {
    let upstream = Server::replies(vec![Reply::Hang]).await;
    let addr = upstream.addr;
    let nginx = tokio::task::spawn_blocking(move || Nginx::proxy(addr, "300ms"))
        .await
        .unwrap();
    let mut config = HttpClientConfig::new(nginx.url());
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(5);
    config.post_is_idempotent = false;
    let client = HttpClient::new(config).unwrap();

    let err = client
        .post("/charge", &json!({"amount": 1}))
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(stache_resilience::http::StatusCode::GATEWAY_TIMEOUT),
        "{err:?}"
    );
    assert_eq!(upstream.hits(), 1, "the upstream executed the POST once");

    // The same call marked safe to repeat is retried: 1 + 3 attempts.
    let err = client
        .post("/embed", &json!({"input": ["a"]}))
        .idempotent(true)
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(stache_resilience::http::StatusCode::GATEWAY_TIMEOUT)
    );
    assert_eq!(upstream.hits(), 1 + 4);
    drop(nginx);
}
