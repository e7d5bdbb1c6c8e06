//! Retrying SDK calls that are not HTTP requests through this crate: an SDK-like
//! client whose calls fail transiently, wrapped in `with_retry` with a `retry_if`
//! that retries only timeouts and throttling — and the blocking variant, for code
//! without a runtime.
//!
//! `cargo run --example sdk_retry`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stache_resilience::retry::{RetryConfig, with_retry, with_retry_blocking};

/// The errors an SDK call can end with, as a cloud SDK reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkError {
    Timeout,
    Throttling,
    AccessDenied,
}

impl SdkError {
    /// Worth another try: the service may answer next time.
    pub fn is_transient(&self) -> bool {
        matches!(self, SdkError::Timeout | SdkError::Throttling)
    }
}

/// A stand-in for an SDK client: each call fails with the scripted errors, in
/// order, then succeeds.
pub struct FakeSdk {
    script: Vec<SdkError>,
    calls: AtomicU32,
}

impl FakeSdk {
    pub fn new(script: Vec<SdkError>) -> Self {
        FakeSdk {
            script,
            calls: AtomicU32::new(0),
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn next(&self) -> Result<String, SdkError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        match self.script.get(n) {
            Some(error) => Err(error.clone()),
            None => Ok(format!("item-{n}")),
        }
    }

    pub async fn get_item(&self) -> Result<String, SdkError> {
        self.next()
    }

    pub fn get_item_blocking(&self) -> Result<String, SdkError> {
        self.next()
    }
}

/// What the example did: each case's result and how many SDK calls it took.
#[derive(Debug)]
pub struct Summary {
    pub transient: (Result<String, SdkError>, u32),
    pub permanent: (Result<String, SdkError>, u32),
    pub exhausted: (Result<String, SdkError>, u32),
    pub blocking: (Result<String, SdkError>, u32),
}

pub async fn run(config: RetryConfig) -> Summary {
    // Throttled twice, then fine: retried, and succeeds on the third call.
    let sdk = FakeSdk::new(vec![SdkError::Throttling, SdkError::Timeout]);
    let result = with_retry(&config, "DynamoDB GetItem", SdkError::is_transient, || {
        sdk.get_item()
    })
    .await;
    let transient = (result, sdk.calls());

    // Access denied is the caller's problem: returned at once.
    let sdk = FakeSdk::new(vec![SdkError::AccessDenied]);
    let result = with_retry(&config, "DynamoDB GetItem", SdkError::is_transient, || {
        sdk.get_item()
    })
    .await;
    let permanent = (result, sdk.calls());

    // Throttled on every call: 1 + max_retries calls, then the last error.
    let sdk = FakeSdk::new(vec![SdkError::Throttling; 10]);
    let result = with_retry(&config, "DynamoDB GetItem", SdkError::is_transient, || {
        sdk.get_item()
    })
    .await;
    let exhausted = (result, sdk.calls());

    // The same from plain threads, sleeping between attempts.
    let sdk = FakeSdk::new(vec![SdkError::Timeout]);
    let result = with_retry_blocking(&config, "S3 GetObject", SdkError::is_transient, || {
        sdk.get_item_blocking()
    });
    let blocking = (result, sdk.calls());

    Summary {
        transient,
        permanent,
        exhausted,
        blocking,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    // Short delays so the example finishes at once; real SDK calls would use the
    // defaults (500 ms doubling to 10 s) or the original design's database
    // advice (2 retries from 0.5 s).
    let config = RetryConfig {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryConfig::default()
    };
    let summary = run(config).await;
    println!(
        "throttled, then fine: {:?} after {} calls",
        summary.transient.0, summary.transient.1
    );
    println!(
        "access denied:        {:?} after {} call",
        summary.permanent.0, summary.permanent.1
    );
    println!(
        "always throttled:     {:?} after {} calls",
        summary.exhausted.0, summary.exhausted.1
    );
    println!(
        "blocking, one timeout: {:?} after {} calls",
        summary.blocking.0, summary.blocking.1
    );
}
