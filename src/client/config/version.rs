//! [`HttpVersion`]: which HTTP versions a client speaks.

/// Which HTTP versions a client speaks.
///
/// In a settings file: `http_version = "auto"`, `"http1_only"` or
/// `"http2_prior_knowledge"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum HttpVersion {
    /// HTTP/2 when the TLS handshake agrees on it (ALPN `h2`), HTTP/1.1
    /// otherwise, and always over plain `http://`. The default.
    #[default]
    Auto,
    /// HTTP/1.1 only (ALPN offers only `http/1.1`).
    Http1Only,
    /// HTTP/2 from the first byte, without negotiation: h2c over plain
    /// `http://` (a server that speaks only HTTP/2), ALPN `h2` alone over TLS.
    Http2PriorKnowledge,
}
