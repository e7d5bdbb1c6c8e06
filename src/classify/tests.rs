//! The classifier's table, case by case.

use super::*;
use http::HeaderValue;

fn status(code: u16) -> Outcome {
    let code = StatusCode::from_u16(code).expect("valid test status");
    classify_response(code, &http::HeaderMap::new())
}

#[test]
fn statuses_follow_the_table() {
    for code in [200, 201, 204, 301, 304] {
        assert_eq!(status(code), Outcome::Success, "{code}");
    }
    for code in [408, 500, 502, 503, 504, 599, 600, 999] {
        let outcome = status(code);
        assert!(
            outcome.is_retryable() && outcome.is_breaker_failure(),
            "{code}"
        );
    }
    let throttled = status(429);
    assert!(throttled.is_retryable() && !throttled.is_breaker_failure());
    for code in [400, 401, 403, 404, 409, 422] {
        let outcome = status(code);
        assert_eq!(outcome, Outcome::ClientError, "{code}");
        assert!(!outcome.is_retryable() && !outcome.is_breaker_failure());
    }
}

#[test]
fn retry_after_is_read_from_throttled_and_failed_responses() {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(
        classify_response(StatusCode::TOO_MANY_REQUESTS, &headers).retry_after(),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        classify_response(StatusCode::SERVICE_UNAVAILABLE, &headers).retry_after(),
        Some(Duration::from_secs(7))
    );
}

fn with(code: u16, headers: &[(&'static str, &'static str)]) -> Outcome {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    classify_response(StatusCode::from_u16(code).expect("valid test status"), &map)
}

#[test]
fn x_should_retry_overrides_the_status() {
    // `true` makes a 4xx retryable, neutral for the breaker, and replayable.
    let outcome = with(409, &[("x-should-retry", "true")]);
    assert!(outcome.is_retryable() && !outcome.is_breaker_failure());
    assert!(matches!(outcome, Outcome::Throttled { .. }));
    // `false` makes anything final.
    let outcome = with(503, &[("x-should-retry", "false")]);
    assert_eq!(outcome, Outcome::Fatal);
    assert!(!outcome.is_retryable() && outcome.is_breaker_failure());
    assert_eq!(with(429, &[("x-should-retry", "FALSE")]), Outcome::Ignored);
    assert_eq!(
        with(400, &[("x-should-retry", "false")]),
        Outcome::ClientError
    );
    // A success stays a success; garbage is ignored.
    assert_eq!(with(200, &[("x-should-retry", "true")]), Outcome::Success);
    assert!(with(503, &[("x-should-retry", "maybe")]).is_retryable());
    assert_eq!(with(404, &[("x-should-retry", "1")]), Outcome::ClientError);

    let unprocessed = |code: u16, headers: &[(&'static str, &'static str)]| {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        response_is_unprocessed(StatusCode::from_u16(code).expect("valid"), &map)
    };
    assert!(unprocessed(429, &[]));
    assert!(unprocessed(503, &[("x-should-retry", "true")]));
    assert!(!unprocessed(429, &[("x-should-retry", "false")]));
    assert!(!unprocessed(503, &[]));
    assert!(!unprocessed(502, &[("retry-after", "1")]));
}

#[test]
fn retry_after_ms_wins_over_retry_after() {
    let outcome = with(429, &[("retry-after", "9"), ("retry-after-ms", "1200")]);
    assert_eq!(outcome.retry_after(), Some(Duration::from_millis(1200)));
    let outcome = with(503, &[("x-ms-retry-after-ms", "30")]);
    assert_eq!(outcome.retry_after(), Some(Duration::from_millis(30)));
}

#[test]
fn errors_are_failures_except_open_circuit_and_pool_timeout() {
    let io: BoxError = Box::new(std::io::Error::other("reset"));
    assert!(
        ErrorsAreFailures
            .classify(Err::<&(), _>(&io))
            .is_breaker_failure()
    );
    let open: BoxError = Box::new(CircuitOpen::new());
    assert_eq!(
        ErrorsAreFailures.classify(Err::<&(), _>(&open)),
        Outcome::Ignored
    );
    assert!(is_circuit_open(&open));
    assert!(!is_circuit_open(&io));
    let pool: BoxError = Box::new(PoolTimeout::new(Duration::from_secs(1)));
    assert_eq!(
        ErrorsAreFailures.classify(Err::<&(), _>(&pool)),
        Outcome::Ignored
    );
    // An error type the classifier cannot look into is a plain failure.
    let plain = std::io::Error::other("x");
    assert!(
        ErrorsAreFailures
            .classify(Err::<&(), _>(&plain))
            .is_breaker_failure()
    );
    assert_eq!(
        ErrorsAreFailures.classify(Ok::<_, &BoxError>(&())),
        Outcome::Success
    );
}

#[test]
fn a_named_provider_error_is_described_by_its_name_not_its_message() {
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let status = StatusCode::from_u16(529).unwrap();
    let mut res = http::Response::builder().status(529).body(()).unwrap();
    res.extensions_mut()
        .insert(crate::provider::ProviderError::parse(status, body).unwrap());
    let describe = |r: &http::Response<()>| {
        ClassifyOutcome::<_, std::io::Error>::describe(&HttpClassifier, r).into_owned()
    };
    assert_eq!(describe(&res), "529 overloaded (overloaded_error)");
    let plain = http::Response::builder().status(503).body(()).unwrap();
    assert_eq!(describe(&plain), "503 Service Unavailable");
}
