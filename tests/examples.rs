//! Every example's logic, run here so that none can rot.

#[path = "../examples/sdk_retry.rs"]
#[allow(dead_code)]
mod sdk_retry;

#[path = "../examples/tower_client.rs"]
#[allow(dead_code)]
mod tower_client;

#[path = "../examples/graceful_degradation.rs"]
#[allow(dead_code)]
mod graceful_degradation;

use std::time::Duration;

use stache_resilience::retry::RetryConfig;

#[tokio::test(start_paused = true)]
async fn sdk_retry_retries_only_transient_errors() {
    use sdk_retry::SdkError;
    let config = RetryConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        ..RetryConfig::default()
    };
    let summary = sdk_retry::run(config).await;
    assert_eq!(summary.transient, (Ok("item-2".to_owned()), 3));
    assert_eq!(summary.permanent, (Err(SdkError::AccessDenied), 1));
    assert_eq!(summary.exhausted, (Err(SdkError::Throttling), 4));
    assert_eq!(summary.blocking, (Ok("item-1".to_owned()), 2));
}

#[tokio::test]
async fn tower_client_shows_what_each_order_costs_a_dead_server() {
    let (url, hits) = tower_client::dead_server().await.unwrap();
    let summary = tower_client::run(&url, &hits, 6).await;
    // Breaker outside: 4 calls x (1 + 3 retries), then the open circuit refuses.
    assert_eq!(summary.breaker_outside, 16);
    // Retry outside: the circuit opens on the 4th attempt; nothing after that.
    assert_eq!(summary.retry_outside, 4);
}

#[tokio::test]
async fn graceful_degradation_falls_back_while_open_and_returns_to_the_primary() {
    // 20 ms of recovery time: the two fallback calls must fit inside it even on
    // a loaded machine, and it is the only real wait in the test.
    let answers = graceful_degradation::run(Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(
        answers,
        [
            "primary", "error", "error", "fallback", "fallback", "primary", "primary"
        ]
    );
}
