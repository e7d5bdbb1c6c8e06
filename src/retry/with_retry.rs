use std::future::Future;
use std::time::Duration;

use super::backoff::{Backoff, RetryConfig};

/// Runs `operation` until it succeeds, `retry_if` rejects its error, or
/// `config.max_retries` retries have been spent — for calls that are not HTTP
/// requests through this crate's client: SDK calls, database queries.
///
/// Between attempts it sleeps for [`RetryConfig::delay_for_attempt`] with
/// `tokio::time::sleep` (so it needs a Tokio runtime with the time driver). An
/// error for which `retry_if` returns `false` is returned at once; after the last
/// retry, the last error is returned unchanged. Each retry is logged at `INFO`
/// with `operation_name` and the attempt number. There is no circuit breaker here;
/// pair it with a [`CircuitBreaker`](crate::CircuitBreaker) by hand where needed.
///
/// With [`RetryConfig::total_timeout`] set, no retry is started whose wait would
/// end past `total_timeout` from the first attempt: the last error is returned
/// instead. An attempt already running is not cut (this function cannot make an
/// `E`); wrap the operation in `tokio::time::timeout` for that.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use stache_resilience::retry::{with_retry, RetryConfig};
///
/// #[derive(Debug)]
/// enum SdkError { Throttled, AccessDenied }
///
/// let mut calls = 0;
/// let result = with_retry(
///     &RetryConfig::default(),
///     "DynamoDB query",
///     |e: &SdkError| matches!(e, SdkError::Throttled),
///     || {
///         calls += 1;
///         let attempt = calls;
///         async move { if attempt < 3 { Err(SdkError::Throttled) } else { Ok("rows") } }
///     },
/// )
/// .await;
/// assert_eq!(result.unwrap(), "rows");
/// assert_eq!(calls, 3);
/// # }
/// ```
pub async fn with_retry<T, E, F, Fut, P>(
    config: &RetryConfig,
    operation_name: &str,
    retry_if: P,
    mut operation: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: Fn(&E) -> bool,
{
    let mut backoff = config.backoff();
    let total = config.max_retries.saturating_add(1);
    let started = tokio::time::Instant::now();
    let mut attempt = 1u32;
    loop {
        match operation().await {
            Ok(value) => {
                log_success(operation_name, attempt, total);
                return Ok(value);
            }
            Err(error) => match next_delay::<E>(
                &mut backoff,
                operation_name,
                attempt,
                total,
                retry_if(&error),
                left(config, started.elapsed()),
            ) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            },
        }
        attempt += 1;
    }
}

/// The blocking form of [`with_retry`], sleeping the current thread between
/// attempts; for code without an async runtime.
///
/// ```
/// use std::time::Duration;
/// use stache_resilience::retry::{with_retry_blocking, RetryConfig};
///
/// let config = RetryConfig { base_delay: Duration::from_millis(1), ..Default::default() };
/// let mut calls = 0;
/// let result: Result<(), &str> =
///     with_retry_blocking(&config, "insert", |e| *e == "timeout", || { calls += 1; Err("constraint") });
/// assert_eq!(result, Err("constraint"));
/// assert_eq!(calls, 1); // not retryable: returned at once
/// ```
pub fn with_retry_blocking<T, E, F, P>(
    config: &RetryConfig,
    operation_name: &str,
    retry_if: P,
    mut operation: F,
) -> Result<T, E>
where
    F: FnMut() -> Result<T, E>,
    P: Fn(&E) -> bool,
{
    let mut backoff = config.backoff();
    let total = config.max_retries.saturating_add(1);
    let started = std::time::Instant::now();
    let mut attempt = 1u32;
    loop {
        match operation() {
            Ok(value) => {
                log_success(operation_name, attempt, total);
                return Ok(value);
            }
            Err(error) => match next_delay::<E>(
                &mut backoff,
                operation_name,
                attempt,
                total,
                retry_if(&error),
                left(config, started.elapsed()),
            ) {
                Some(delay) => std::thread::sleep(delay),
                None => return Err(error),
            },
        }
        attempt += 1;
    }
}

fn log_success(operation_name: &str, attempt: u32, total: u32) {
    if attempt == 1 {
        tracing::debug!(
            operation = operation_name,
            "{operation_name} succeeded on first attempt"
        );
    } else {
        tracing::info!(
            operation = operation_name,
            attempt,
            "{operation_name} attempt {attempt}/{total} succeeded"
        );
    }
}

/// The time left of the call's `total_timeout`, if it has one.
fn left(config: &RetryConfig, elapsed: Duration) -> Option<Duration> {
    config.total_timeout.map(|t| t.saturating_sub(elapsed))
}

/// Decides whether to retry after failed attempt `attempt` (1-based) and logs why.
fn next_delay<E>(
    backoff: &mut Backoff,
    operation_name: &str,
    attempt: u32,
    total: u32,
    retryable: bool,
    left: Option<Duration>,
) -> Option<Duration> {
    // The error type has no Display bound (any SDK error fits), so logs name it.
    let error = std::any::type_name::<E>();
    if !retryable {
        tracing::debug!(
            operation = operation_name,
            attempt,
            "{operation_name} attempt {attempt}/{total} failed: {error} (not retryable)"
        );
        return None;
    }
    if attempt >= total {
        tracing::warn!(
            operation = operation_name,
            attempt,
            "{operation_name} attempt {attempt}/{total} failed: {error}. Giving up"
        );
        return None;
    }
    let delay = backoff.next_delay();
    if left.is_some_and(|left| delay >= left) {
        tracing::warn!(
            operation = operation_name,
            attempt,
            "{operation_name} attempt {attempt}/{total} failed: {error}. Giving up: a wait of {:.2}s would end past total_timeout",
            delay.as_secs_f64()
        );
        return None;
    }
    tracing::info!(
        operation = operation_name,
        attempt,
        "{operation_name} attempt {attempt}/{total} failed: {error}. Retrying in {:.2}s",
        delay.as_secs_f64()
    );
    Some(delay)
}
