//! Reading a field of a JSON event without parsing the event: a few byte
//! searches per event, where a parse would cost several times the reading of
//! the line. Sound for JSON text: a key's quotes cannot appear unescaped inside
//! a string value, so a match of `"key"` followed by a colon is a key.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::Finder;

/// A JSON key, with its searcher built once: `key!("content")` finds
/// `"content"`.
pub(super) struct Key {
    needle: &'static [u8],
    finder: LazyLock<Finder<'static>, fn() -> Finder<'static>>,
}

macro_rules! key {
    ($name:literal) => {
        $crate::provider::dialect::scan::Key::new(concat!("\"", $name, "\"").as_bytes(), || {
            memchr::memmem::Finder::new(concat!("\"", $name, "\"").as_bytes())
        })
    };
}
pub(super) use key;

impl Key {
    pub(super) const fn new(needle: &'static [u8], make: fn() -> Finder<'static>) -> Key {
        Key {
            needle,
            finder: LazyLock::new(make),
        }
    }

    fn len(&self) -> usize {
        self.needle.len()
    }
}

/// The JSON text after the first `key` at or after `from` that is followed
/// by a colon, whitespace skipped, and where to look for the next.
fn value_from<'a>(bytes: &'a [u8], key: &Key, mut from: usize) -> Option<(&'a [u8], usize)> {
    loop {
        let at = from + key.finder.find(bytes.get(from..)?)?;
        from = at + key.len();
        let rest = skip_space(bytes.get(from..)?);
        if let Some((&b':', rest)) = rest.split_first() {
            return Some((skip_space(rest), from));
        }
    }
}

/// The JSON text after the first `key` and its colon: an object's key is
/// there once (a second one, in another choice, is not looked for: each
/// search costs as much as the rest of the event's reading).
fn first_value<'a>(data: &'a str, key: &Key) -> Option<&'a [u8]> {
    value_from(data.as_bytes(), key, 0).map(|(value, _)| value)
}

/// Whether the value after some `key` passes `test`, the first that does.
fn any_value(data: &str, key: &Key, test: impl Fn(&[u8]) -> bool) -> bool {
    let bytes = data.as_bytes();
    let mut from = 0;
    while let Some((value, next)) = value_from(bytes, key, from) {
        if test(value) {
            return true;
        }
        from = next;
    }
    false
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Where the value after the `key` at `at` starts (its colon and spaces
/// skipped), if `key` is at `at`.
pub(super) fn value_at(bytes: &[u8], at: usize, key: &Key) -> Option<usize> {
    let rest = skip_space(bytes.get(at..)?.strip_prefix(key.needle)?);
    match rest.split_first() {
        Some((&b':', value)) => Some(bytes.len() - skip_space(value).len()),
        _ => None,
    }
}

/// Where the first `key` at or after `from` that is followed by a colon
/// starts.
pub(super) fn find_key(bytes: &[u8], key: &Key, from: usize) -> Option<usize> {
    let mut from = from;
    loop {
        let at = from + key.finder.find(bytes.get(from..)?)?;
        if value_at(bytes, at, key).is_some() {
            return Some(at);
        }
        from = at + key.len();
    }
}

/// Where the JSON string starting at `at` ends (just past its closing
/// quote), its escapes skipped.
pub(super) fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    // A byte at a time: the strings read here are a token or a reason,
    // shorter than what a vector search needs to pay off.
    let mut i = at + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Whether a value is a string that is not empty.
pub(super) fn is_text_at(bytes: &[u8], at: usize) -> bool {
    bytes.get(at..).is_some_and(is_text)
}

/// Whether a value is a string that is not empty.
fn is_text(value: &[u8]) -> bool {
    value.first() == Some(&b'"') && value.get(1).is_some_and(|&b| b != b'"')
}

/// Whether `key` (a quoted word) is anywhere in the data.
pub(super) fn mentions(data: &str, key: &Key) -> bool {
    key.finder.find(data.as_bytes()).is_some()
}

/// Whether some `key` holds a string that is not empty.
pub(super) fn has_text(data: &str, key: &Key) -> bool {
    any_value(data, key, is_text)
}

/// Whether some `key` holds an array that is not empty.
pub(super) fn has_items(data: &str, key: &Key) -> bool {
    any_value(data, key, |v| {
        v.first() == Some(&b'[') && skip_space(&v[1..]).first().is_some_and(|&b| b != b']')
    })
}

/// Whether the first `key` holds a string (not `null`).
pub(super) fn is_set(data: &str, key: &Key) -> bool {
    first_value(data, key).is_some_and(|v| v.first() == Some(&b'"'))
}

/// Whether the first `key` holds `true`.
pub(super) fn is_true(data: &str, key: &Key) -> bool {
    first_value(data, key).is_some_and(|v| v.starts_with(b"true"))
}

/// Whether the first `key` holds an object.
pub(super) fn has_object(data: &str, key: &Key) -> bool {
    first_value(data, key).is_some_and(|v| v.first() == Some(&b'{'))
}

/// The first string `key` holds, unescaped.
pub(super) fn string<'a>(data: &'a str, key: &'a Key) -> Option<Cow<'a, str>> {
    first_value(data, key).and_then(|v| {
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
    let bytes = data.as_bytes();
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let last = bytes.iter().rev().find(|b| !b.is_ascii_whitespace());
    first == Some(&b'{') && last == Some(&b'}')
}

/// Whether the data is a JSON object whose first key is `key`.
pub(super) fn starts_with_key(data: &str, key: &Key) -> bool {
    let rest = skip_space(data.as_bytes());
    rest.strip_prefix(b"{")
        .is_some_and(|rest| skip_space(rest).starts_with(key.needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    static CONTENT: Key = key!("content");
    static FINISH: Key = key!("finish_reason");
    static TOOLS: Key = key!("tool_calls");
    static DONE: Key = key!("done");
    static USAGE: Key = key!("usage");
    static MODEL: Key = key!("model");
    static ERROR: Key = key!("error");

    #[test]
    fn fields_are_found_with_or_without_spaces_and_never_inside_strings() {
        let compact = r#"{"delta":{"role":"assistant","content":""},"finish_reason":null}"#;
        assert!(!has_text(compact, &CONTENT));
        assert!(!is_set(compact, &FINISH));
        let spaced = r#"{"delta": {"content": "Hi"}, "finish_reason": "stop"}"#;
        assert!(has_text(spaced, &CONTENT));
        assert!(is_set(spaced, &FINISH));
        // A key's name inside a string value is escaped, so never matched.
        let quoted = r#"{"delta":{"content":"","note":"\"content\": \"x\""}}"#;
        assert!(!has_text(quoted, &CONTENT));
        assert!(has_items(r#"{"tool_calls": [ {"id":"a"} ]}"#, &TOOLS));
        assert!(!has_items(r#"{"tool_calls":[ ]}"#, &TOOLS));
        assert!(is_true(r#"{"done": true}"#, &DONE));
        assert!(!is_true(r#"{"done":false}"#, &DONE));
        assert!(has_object(r#"{"usage": {"a":1}}"#, &USAGE));
        assert!(!has_object(r#"{"usage":null}"#, &USAGE));
        assert_eq!(
            string(r#"{"model":"gpt-4o"}"#, &MODEL).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            string(r#"{"model": "a\/b\"c"}"#, &MODEL).as_deref(),
            Some("a/b\"c")
        );
        assert_eq!(string(r#"{"model":7}"#, &MODEL), None);
        assert!(starts_with_key(r#" { "error": {}}"#, &ERROR));
        // Keys at a place, and strings' ends past their escapes.
        let bytes = spaced.as_bytes();
        let at = find_key(bytes, &CONTENT, 0).unwrap();
        assert_eq!(&spaced[at..at + 9], "\"content\"");
        let value = value_at(bytes, at, &CONTENT).unwrap();
        assert!(is_text_at(bytes, value));
        assert_eq!(&spaced[value..string_end(bytes, value).unwrap()], "\"Hi\"");
        let escaped = br#"{"content":"a\"b\\","x":1}"#;
        let value = value_at(escaped, 1, &CONTENT).unwrap();
        assert_eq!(
            &escaped[value..string_end(escaped, value).unwrap()],
            br#""a\"b\\""#
        );
        assert_eq!(value_at(escaped, 2, &CONTENT), None);
        assert_eq!(string_end(br#""cut"#, 0), None);
        assert!(!starts_with_key(r#"{"id":1,"error":{}}"#, &ERROR));
        // Cut data is no match, never a panic.
        assert!(!has_text(r#"{"content""#, &CONTENT));
        assert!(!has_text(r#"{"content":"#, &CONTENT));
        assert_eq!(string(r#"{"model":"abc"#, &MODEL), None);
    }
}
