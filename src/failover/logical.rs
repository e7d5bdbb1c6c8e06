//! [`LogicalRequest`]: a call as the application means it, before any
//! provider's shape.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::redact::{Redacted, RedactedEndpoint};

/// A call as the application means it, before a provider's
/// [shape](crate::failover::ProviderGroup::shaped) rewrites it for that provider's API: what
/// each member of a group is sent.
#[derive(Clone)]
#[non_exhaustive]
pub struct LogicalRequest {
    /// The method.
    pub method: Method,
    /// The endpoint, appended to the member's base URL (`/embeddings`).
    pub endpoint: String,
    /// A JSON body; sent with `content-type: application/json`.
    pub json: Option<serde_json::Value>,
    /// A body of other bytes, when there is no `json`.
    pub body: Option<Bytes>,
    /// Headers of this call, beside each member's own.
    pub headers: HeaderMap,
}

impl LogicalRequest {
    /// A request of `method` on `endpoint`, without a body.
    pub fn new(method: Method, endpoint: impl Into<String>) -> Self {
        LogicalRequest {
            method,
            endpoint: endpoint.into(),
            json: None,
            body: None,
            headers: HeaderMap::new(),
        }
    }
}
impl fmt::Debug for LogicalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalRequest")
            .field("method", &self.method)
            .field("endpoint", &RedactedEndpoint(&self.endpoint))
            .field("headers", &Redacted(&self.headers))
            .field("json", &self.json.is_some())
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .finish()
    }
}
