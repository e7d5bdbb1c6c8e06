//! Keeping secrets out of logs and `Debug` output.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// What a header name contains when its value must never reach a log or
/// `Debug` output (header names are lower case).
const SENSITIVE: [&str; 8] = [
    "auth",
    "key",
    "token",
    "secret",
    "password",
    "session",
    "cookie",
    "signature",
];

/// Whether a header's value must never reach a log or `Debug` output: any name
/// containing `auth`, `key`, `token`, `secret`, `password`, `session`, `cookie`
/// or `signature` (so `authorization`, `x-api-key`, `set-cookie`,
/// `x-amz-security-token`, `authentication` all are).
pub(crate) fn is_sensitive(name: &HeaderName) -> bool {
    let name = name.as_str();
    SENSITIVE.iter().any(|part| name.contains(part))
}

/// Formats a URI with every query value replaced by `[redacted]` (names kept),
/// for log lines: `?api_key=…` must never reach a log.
pub(crate) struct RedactedUri<'a>(pub(crate) &'a http::Uri);

impl fmt::Display for RedactedUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            // A user name or password never leaves this process in a log either.
            let host = authority.as_str().rsplit('@').next().unwrap_or_default();
            write!(f, "{scheme}://{host}")?;
        }
        f.write_str(uri.path())?;
        match uri.query() {
            Some(query) => redacted_query(f, query),
            None => Ok(()),
        }
    }
}

/// Formats an endpoint (a path, perhaps with a query) with every query value
/// replaced by `[redacted]`, as [`RedactedUri`] does.
pub(crate) struct RedactedEndpoint<'a>(pub(crate) &'a str);

impl fmt::Debug for RedactedEndpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, query) = match self.0.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.0, None),
        };
        f.write_str("\"")?;
        f.write_str(path)?;
        if let Some(query) = query {
            redacted_query(f, query)?;
        }
        f.write_str("\"")
    }
}

/// Writes `?` and `query` with its values redacted.
fn redacted_query(f: &mut fmt::Formatter<'_>, query: &str) -> fmt::Result {
    f.write_str("?")?;
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            f.write_str("&")?;
        }
        match pair.split_once('=') {
            Some((name, _)) => write!(f, "{name}=[redacted]")?,
            None => f.write_str(pair)?,
        }
    }
    Ok(())
}

/// Formats headers with sensitive values replaced by `[redacted]`.
pub(crate) struct Redacted<'a>(pub(crate) &'a HeaderMap);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if is_sensitive(name) || value.is_sensitive() {
                map.entry(&name.as_str(), &"[redacted]");
            } else {
                map.entry(&name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_that_hints_at_a_secret_is_sensitive() {
        for name in [
            "authorization",
            "proxy-authorization",
            "x-authorization",
            "authentication",
            "x-api-key",
            "x-goog-api-key",
            "x-amz-security-token",
            "x-password",
            "x-session-id",
            "cookie",
            "set-cookie",
            "x-signature",
            "x-client-secret",
        ] {
            assert!(is_sensitive(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "content-type",
            "accept",
            "user-agent",
            "x-request-id",
            "x-tenant",
        ] {
            assert!(!is_sensitive(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn query_values_and_userinfo_are_redacted_from_uris() {
        let uri: http::Uri = "http://user:pw@h:8/v1/x?api_key=s3cret&flag&b=2"
            .parse()
            .unwrap();
        let text = RedactedUri(&uri).to_string();
        assert_eq!(text, "http://h:8/v1/x?api_key=[redacted]&flag&b=[redacted]");
        let uri: http::Uri = "/only/path".parse().unwrap();
        assert_eq!(RedactedUri(&uri).to_string(), "/only/path");
    }
}
