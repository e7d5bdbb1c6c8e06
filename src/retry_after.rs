//! Reading the `Retry-After` header.

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` header value: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`.
///
/// A date in the past gives zero. A number too large for a `u64` gives
/// [`Duration::MAX`], so it is over any cap. Anything else (negative numbers,
/// fractions, garbage) gives `None` and is ignored.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
/// use stache_resilience::classify::parse_retry_after;
///
/// let now = SystemTime::now();
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("2"), now), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("-1"), now), None);
/// ```
pub fn parse_retry_after(value: &http::HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            text.parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait an answer asks for: `retry-after-ms` or `x-ms-retry-after-ms`
/// (milliseconds, fractions allowed) when present and readable, else
/// `Retry-After` (see [`parse_retry_after`]).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::{HeaderMap, HeaderValue};
/// use stache_resilience::classify::headers_retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", HeaderValue::from_static("2"));
/// headers.insert("retry-after-ms", HeaderValue::from_static("250"));
/// assert_eq!(headers_retry_after(&headers, SystemTime::now()), Some(Duration::from_millis(250)));
/// ```
pub fn headers_retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(wait) = headers.get(name).and_then(parse_millis) {
            return Some(wait);
        }
    }
    parse_retry_after(headers.get(http::header::RETRY_AFTER)?, now)
}

/// A non-negative count of milliseconds, fractions allowed (`1500`, `20.5`).
fn parse_millis(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let millis: f64 = text.parse().ok()?;
    Some(Duration::try_from_secs_f64(millis / 1000.0).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_parses_both_forms_and_rejects_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        let parse = |s: &'static str| parse_retry_after(&HeaderValue::from_static(s), now);
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse("99999999999999999999999"), Some(Duration::MAX));
        // 2015-10-21 07:28:00 UTC is 1_445_412_480 s after the epoch.
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(480))
        );
        assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            headers_retry_after(&headers, now),
            Some(Duration::from_secs(7))
        );
        headers.insert("x-ms-retry-after-ms", HeaderValue::from_static("20.5"));
        assert_eq!(
            headers_retry_after(&headers, now),
            Some(Duration::from_micros(20_500))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            headers_retry_after(&headers, now),
            Some(Duration::from_millis(1500))
        );
        // An unreadable millisecond value falls back to the next header.
        headers.insert("retry-after-ms", HeaderValue::from_static("-3"));
        assert_eq!(
            headers_retry_after(&headers, now),
            Some(Duration::from_micros(20_500))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("1e400"));
        headers.remove("x-ms-retry-after-ms");
        assert_eq!(
            headers_retry_after(&headers, now),
            Some(Duration::from_secs(7))
        );
        headers.insert(
            "retry-after-ms",
            HeaderValue::from_static("99999999999999999999999999"),
        );
        assert_eq!(headers_retry_after(&headers, now), Some(Duration::MAX));
        for garbage in [
            "-5",
            "1.5",
            "",
            "soon",
            "Wed, 99 Oct 2015 07:28:00 GMT",
            "+3",
        ] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
    }
}
