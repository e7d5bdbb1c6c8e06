//! Keeping secrets out of logs and `Debug` output.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// Whether a header's value must never reach a log or `Debug` output.
pub(crate) fn is_sensitive(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || name.contains("key")
        || name.contains("token")
        || name.contains("secret")
}

/// Formats headers with sensitive values replaced by `[redacted]`.
pub(crate) struct Redacted<'a>(pub(crate) &'a HeaderMap);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if is_sensitive(name) {
                map.entry(&name.as_str(), &"[redacted]");
            } else {
                map.entry(&name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
            }
        }
        map.finish()
    }
}
