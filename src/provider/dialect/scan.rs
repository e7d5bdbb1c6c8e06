//! Reading a field of a JSON event without parsing the event: a few byte
//! searches per event, where a parse would cost several times the reading of
//! the line. Sound for JSON text: a key's quotes cannot appear unescaped inside
//! a string value, so a match of `"key"` followed by a colon is a key.

use std::borrow::Cow;

/// The JSON text after each `key` (given with its quotes) and its colon,
/// whitespace skipped.
fn values<'a>(data: &'a str, key: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    data.match_indices(key).filter_map(move |(at, _)| {
        let rest = data.as_bytes().get(at + key.len()..)?;
        let rest = skip_space(rest);
        let (&colon, rest) = rest.split_first()?;
        (colon == b':').then(|| skip_space(rest))
    })
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Whether some `key` holds a string that is not empty.
pub(super) fn has_text(data: &str, key: &str) -> bool {
    values(data, key).any(|v| v.first() == Some(&b'"') && v.get(1).is_some_and(|&b| b != b'"'))
}

/// Whether some `key` holds an array that is not empty.
pub(super) fn has_items(data: &str, key: &str) -> bool {
    values(data, key).any(|v| {
        v.first() == Some(&b'[') && skip_space(&v[1..]).first().is_some_and(|&b| b != b']')
    })
}

/// Whether some `key` holds a string (not `null`).
pub(super) fn is_set(data: &str, key: &str) -> bool {
    values(data, key).any(|v| v.first() == Some(&b'"'))
}

/// Whether some `key` holds `true`.
pub(super) fn is_true(data: &str, key: &str) -> bool {
    values(data, key).any(|v| v.starts_with(b"true"))
}

/// Whether some `key` holds an object.
pub(super) fn has_object(data: &str, key: &str) -> bool {
    values(data, key).any(|v| v.first() == Some(&b'{'))
}

/// The first string `key` holds, unescaped.
pub(super) fn string<'a>(data: &'a str, key: &'a str) -> Option<Cow<'a, str>> {
    values(data, key).find_map(|v| {
        let body = v.strip_prefix(b"\"")?;
        let end = body.iter().position(|&b| b == b'"' || b == b'\\')?;
        if body[end] == b'"' {
            return std::str::from_utf8(&body[..end]).ok().map(Cow::Borrowed);
        }
        // Escapes: let the JSON reader find the end and undo them.
        let mut reader = serde_json::Deserializer::from_slice(v).into_iter::<String>();
        reader.next()?.ok().map(Cow::Owned)
    })
}

/// Whether the data has the shape of a JSON object (`{` … `}`): an event
/// cut short or garbled does not. The rest of the object is not checked.
pub(super) fn is_object(data: &str) -> bool {
    let data = data.trim();
    data.starts_with('{') && data.ends_with('}')
}

/// Whether the data is a JSON object whose first key is `key`.
pub(super) fn starts_with_key(data: &str, key: &str) -> bool {
    let rest = skip_space(data.as_bytes());
    rest.strip_prefix(b"{")
        .is_some_and(|rest| skip_space(rest).starts_with(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_with_or_without_spaces_and_never_inside_strings() {
        let compact = r#"{"delta":{"role":"assistant","content":""},"finish_reason":null}"#;
        assert!(!has_text(compact, r#""content""#));
        assert!(!is_set(compact, r#""finish_reason""#));
        let spaced = r#"{"delta": {"content": "Hi"}, "finish_reason": "stop"}"#;
        assert!(has_text(spaced, r#""content""#));
        assert!(is_set(spaced, r#""finish_reason""#));
        // A key's name inside a string value is escaped, so never matched.
        let quoted = r#"{"delta":{"content":"","note":"\"content\": \"x\""}}"#;
        assert!(!has_text(quoted, r#""content""#));
        assert!(has_items(
            r#"{"tool_calls": [ {"id":"a"} ]}"#,
            r#""tool_calls""#
        ));
        assert!(!has_items(r#"{"tool_calls":[ ]}"#, r#""tool_calls""#));
        assert!(is_true(r#"{"done": true}"#, r#""done""#));
        assert!(!is_true(r#"{"done":false}"#, r#""done""#));
        assert!(has_object(r#"{"usage": {"a":1}}"#, r#""usage""#));
        assert!(!has_object(r#"{"usage":null}"#, r#""usage""#));
        assert_eq!(
            string(r#"{"model":"gpt-4o"}"#, r#""model""#).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            string(r#"{"model": "a\/b\"c"}"#, r#""model""#).as_deref(),
            Some("a/b\"c")
        );
        assert_eq!(string(r#"{"model":7}"#, r#""model""#), None);
        assert!(starts_with_key(r#" { "error": {}}"#, r#""error""#));
        assert!(!starts_with_key(r#"{"id":1,"error":{}}"#, r#""error""#));
        // Cut data is no match, never a panic.
        assert!(!has_text(r#"{"content""#, r#""content""#));
        assert!(!has_text(r#"{"content":"#, r#""content""#));
        assert_eq!(string(r#"{"model":"abc"#, r#""model""#), None);
    }
}
