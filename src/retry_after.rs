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
