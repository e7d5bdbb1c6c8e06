//! What providers report about their limits in response headers; the table is
//! in the [module documentation](super).

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The longest reset a header may announce before it is taken for junk: a
/// day covers the per-day limits some providers report.
const MAX_RESET: Duration = Duration::from_secs(86_400);

/// How long the provider says that one of its limits is spent: the longest
/// reset among the limits whose remaining count is `0`. `None` when no limit
/// is spent, or when the headers that say so do not make sense (a limit of
/// `0`, a count that is negative or empty, a reset that is junk or past).
///
/// One pass over the header names; the values are read only for a remaining
/// count of `0`, and the clock (`now`) only for an RFC 3339 reset, so an answer
/// with a healthy quota costs a few comparisons.
pub(crate) fn spent_for(headers: &HeaderMap, now: impl Fn() -> SystemTime) -> Option<Duration> {
    let mut longest: Option<Duration> = None;
    for (name, value) in headers {
        let name = name.as_str();
        let Some(scheme) = Scheme::of_remaining(name) else {
            continue;
        };
        if value.as_bytes().trim_ascii() != b"0" {
            continue;
        }
        let dimension = scheme.dimension(name);
        let limit = headers
            .get(scheme.header(dimension, Field::Limit))
            .map(|v| parse_count(v.as_bytes()));
        // A limit that is 0 or unreadable makes the rest unreadable too.
        if matches!(limit, Some(None) | Some(Some(0))) {
            continue;
        }
        let Some(reset) = headers.get(scheme.header(dimension, Field::Reset)) else {
            continue;
        };
        let Ok(reset) = reset.to_str() else {
            continue;
        };
        let wait = match scheme {
            Scheme::OpenAi => parse_go_duration(reset.trim()),
            Scheme::Anthropic => {
                parse_rfc3339(reset.trim()).and_then(|at| at.duration_since(now()).ok())
            }
        };
        let Some(wait) = wait.filter(|w| !w.is_zero() && *w <= MAX_RESET) else {
            continue;
        };
        longest = Some(longest.map_or(wait, |l| l.max(wait)));
    }
    longest
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
    OpenAi,
    /// `anthropic-ratelimit-{dimension}-{limit,remaining,reset}`.
    Anthropic,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Limit,
    Reset,
}

const OPENAI_REMAINING: &str = "x-ratelimit-remaining-";
const ANTHROPIC: &str = "anthropic-ratelimit-";
const ANTHROPIC_REMAINING: &str = "-remaining";

impl Scheme {
    /// The scheme of a header naming a remaining count, if it is one.
    fn of_remaining(name: &str) -> Option<Scheme> {
        if name.len() > OPENAI_REMAINING.len() && name.starts_with(OPENAI_REMAINING) {
            Some(Scheme::OpenAi)
        } else if name.len() > ANTHROPIC.len() + ANTHROPIC_REMAINING.len()
            && name.starts_with(ANTHROPIC)
            && name.ends_with(ANTHROPIC_REMAINING)
        {
            Some(Scheme::Anthropic)
        } else {
            None
        }
    }

    /// `requests`, `tokens`, `input-tokens`, …: what the remaining count counts.
    fn dimension(self, remaining: &str) -> &str {
        match self {
            Scheme::OpenAi => &remaining[OPENAI_REMAINING.len()..],
            Scheme::Anthropic => {
                &remaining[ANTHROPIC.len()..remaining.len() - ANTHROPIC_REMAINING.len()]
            }
        }
    }

    /// The name of the header with `field` for `dimension`.
    fn header(self, dimension: &str, field: Field) -> String {
        let field = match field {
            Field::Limit => "limit",
            Field::Reset => "reset",
        };
        match self {
            Scheme::OpenAi => format!("x-ratelimit-{field}-{dimension}"),
            Scheme::Anthropic => format!("{ANTHROPIC}{dimension}-{field}"),
        }
    }
}

/// A count: ASCII digits only (no sign), at most a `u64`.
fn parse_count(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text.trim_ascii()).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A duration as Go prints one, as OpenAI's reset headers carry it: `6m0s`,
/// `1.5s`, `20ms`, `1h2m3.25s`, `150us`. No sign, at least one unit.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// An RFC 3339 timestamp (`2026-12-02T10:00:30Z`, `…T10:00:30.5+01:00`), as
/// Anthropic's reset headers carry it.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // A leap second reads as the second before the next minute.
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &text[start..end.min(start + 9)];
        let scale = 10u32.pow(9 - digits.len() as u32);
        nanos = digits.parse::<u32>().ok()? * scale;
        at = end;
    }
    let offset = match text.get(at..)? {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && matches!(zone.as_bytes()[0], b'+' | b'-') => {
            if zone.as_bytes()[3] != b':' {
                return None;
            }
            let hours = num(at + 1, at + 3)?;
            let minutes = num(at + 4, at + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if zone.as_bytes()[0] == b'-' { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    let seconds = u64::try_from(seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn at(text: &str) -> SystemTime {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn go_durations_as_openai_sends_them() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_go_duration("20ms"), Some(ms(20)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(ms(3_723_500)));
        assert_eq!(parse_go_duration("150us"), Some(Duration::from_micros(150)));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        for junk in ["", "-1s", "5", "s", "1.2.3s", "1x", "ms20", " 1s", "1e3s"] {
            assert_eq!(parse_go_duration(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn rfc3339_timestamps_as_anthropic_sends_them() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(at("1970-01-01T00:00:00Z"), epoch);
        assert_eq!(
            at("2026-12-02T10:00:30Z").duration_since(epoch).unwrap(),
            Duration::from_secs(1_796_205_630)
        );
        assert_eq!(
            at("2026-12-02T11:00:30.25+01:00"),
            at("2026-12-02T10:00:30.25Z")
        );
        assert_eq!(
            at("2024-03-01T00:00:00Z")
                .duration_since(at("2024-02-28T00:00:00Z"))
                .unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        for junk in [
            "",
            "2026-12-02",
            "2026-13-02T10:00:30Z",
            "2026-12-02T24:00:30Z",
            "2026-12-02T10:00:30",
            "2026-12-02T10:00:30+0100",
            "2026-12-02T10:00:30.Z",
            "1969-12-31T23:59:59Z",
            "２０２６-12-02T10:00:30Z",
        ] {
            assert_eq!(parse_rfc3339(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn openai_remaining_zero_closes_for_the_longest_reset() {
        let now = SystemTime::now();
        let spent = headers(&[
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1.5s"),
            ("x-ratelimit-limit-tokens", "90000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(spent_for(&spent, || now), Some(Duration::from_secs(360)));
        let healthy = headers(&[
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
        ]);
        assert_eq!(spent_for(&healthy, || now), None);
    }

    #[test]
    fn anthropic_remaining_zero_closes_until_the_reset() {
        let now = at("2026-12-02T10:00:00Z");
        let spent = headers(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "12"),
            ("anthropic-ratelimit-requests-reset", "2026-12-02T10:00:40Z"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "0"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-12-02T10:00:07.5Z",
            ),
        ]);
        assert_eq!(spent_for(&spent, || now), Some(Duration::from_millis(7500)));
    }

    #[test]
    fn junk_values_are_ignored() {
        let now = at("2026-12-02T10:00:00Z");
        let cases: &[&[(&'static str, &'static str)]] = &[
            // A limit of 0, or one that is not a count.
            &[
                ("x-ratelimit-limit-requests", "0"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
            ],
            &[
                ("x-ratelimit-limit-requests", "-5"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
            ],
            // A negative or empty remaining count.
            &[
                ("x-ratelimit-remaining-requests", "-1"),
                ("x-ratelimit-reset-requests", "1s"),
            ],
            &[
                ("x-ratelimit-remaining-requests", ""),
                ("x-ratelimit-reset-requests", "1s"),
            ],
            // A reset that is negative, empty, zero, absent or in the past.
            &[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "-3s"),
            ],
            &[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", ""),
            ],
            &[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "0s"),
            ],
            &[("x-ratelimit-remaining-tokens", "0")],
            &[
                ("anthropic-ratelimit-tokens-remaining", "0"),
                ("anthropic-ratelimit-tokens-reset", "2026-12-02T09:59:00Z"),
            ],
            &[
                ("anthropic-ratelimit-tokens-remaining", "0"),
                ("anthropic-ratelimit-tokens-reset", "next tuesday"),
            ],
            // A reset more than a day away.
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1000h"),
            ],
            // A bare prefix is no header of the scheme.
            &[
                ("x-ratelimit-remaining-", "0"),
                ("anthropic-ratelimit--remaining", "0"),
            ],
        ];
        for case in cases {
            assert_eq!(spent_for(&headers(case), || now), None, "{case:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_text_are_ignored() {
        let mut map = HeaderMap::new();
        map.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        map.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_bytes(b"1\xffs").unwrap(),
        );
        assert_eq!(spent_for(&map, SystemTime::now), None);
    }
}
