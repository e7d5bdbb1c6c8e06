//! What a successful buffered call returns: [`Response`].

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};
use crate::redact::Redacted;
use crate::request_id::RequestId;

/// A 2xx response whose body was read in full during the attempt.
///
/// Every accessor is synchronous: the network part is over.
#[derive(Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    request_id: RequestId,
}

impl Response {
    pub(crate) fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        request_id: RequestId,
    ) -> Self {
        Response {
            status,
            headers,
            body,
            request_id,
        }
    }

    /// The status code (always 2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The ID the call was sent with.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The body (a cheap reference-counted handle).
    pub fn bytes(&self) -> Bytes {
        self.body.clone()
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// A body error ([`Error::is_body`]) if the body is not valid UTF-8.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.to_vec()).map_err(|e| {
            Error::new(ErrorKind::Body)
                .with_source(e)
                .with_request_id(self.request_id.clone())
        })
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// A decode error ([`Error::is_decode`]) naming where the JSON and `T` part.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(ErrorKind::Decode)
                .with_source(e)
                .with_request_id(self.request_id.clone())
        })
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("request_id", &self.request_id.as_str())
            .field("headers", &Redacted(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}
