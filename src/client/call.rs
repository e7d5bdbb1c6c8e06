//! What a call is made of before it is sent, and how it becomes the request the
//! stack is called with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::Serialize;

use super::http_client::{HttpClient, StackRequest};
use super::transport::{Outgoing, Streaming};
use crate::error::{Error, ErrorKind};
use crate::pool::HoldSlot;
use crate::request_id::RequestId;
use crate::timeout::RequestTimeout;

/// A call as the request builders collect it.
pub(super) struct Call<'a> {
    pub(super) client: &'a HttpClient,
    pub(super) method: Method,
    pub(super) endpoint: &'a str,
    /// The body, or the error that serializing it gave (reported at `send`).
    pub(super) body: Result<Option<Bytes>, Error>,
    pub(super) headers: HeaderMap,
    pub(super) timeout: Option<Duration>,
    pub(super) request_id: Option<RequestId>,
}

impl<'a> Call<'a> {
    pub(super) fn new(
        client: &'a HttpClient,
        method: Method,
        endpoint: &'a str,
        body: Result<Option<Bytes>, Error>,
    ) -> Self {
        Call {
            client,
            method,
            endpoint,
            body,
            headers: HeaderMap::new(),
            timeout: None,
            request_id: None,
        }
    }

    /// The path the request goes to, as its URI will have it (the base URL's
    /// path, then the endpoint's, without the query), for the call's span.
    pub(super) fn path(&self) -> impl fmt::Display + '_ {
        CallPath {
            base: &self.client.inner.base_path,
            endpoint: self.endpoint.split('?').next().unwrap_or_default(),
        }
    }

    /// The request the stack is called with, under `id`.
    pub(super) fn build(self, streaming: bool, id: &RequestId) -> Result<StackRequest, Error> {
        let body = self.body?;
        let endpoint = self.endpoint;
        if !endpoint.is_empty() && !endpoint.starts_with('/') && !endpoint.starts_with('?') {
            return Err(Error::new(ErrorKind::Request).with_message(format!(
                "endpoint {endpoint:?} must be a path starting with '/'"
            )));
        }
        let inner = &*self.client.inner;
        // One allocation of the exact size, which the URI then keeps without a copy.
        let mut url = String::with_capacity(inner.base.len() + endpoint.len());
        url.push_str(&inner.base);
        url.push_str(endpoint);
        let uri = http::Uri::try_from(url).map_err(|e| {
            Error::new(ErrorKind::Request)
                .with_message(format!("endpoint {endpoint:?} does not form a valid URL"))
                .with_source(e)
        })?;
        // The request's own header map stays empty: the transport builds each
        // attempt's headers from the shared template, so the copy the retry layer
        // keeps costs a few reference counts rather than a header map.
        let outgoing = Outgoing {
            headers: inner.templates.pick(body.is_some(), streaming).clone(),
            extra: (!self.headers.is_empty()).then(|| Arc::new(self.headers)),
            id: id.header_value().clone(),
            body: body.unwrap_or_default(),
        };
        let mut request = http::Request::new(outgoing);
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        // The ID goes in the header alone: nothing below the client reads it from
        // the extensions, and putting it there would cost allocations on every
        // copy the retry layer keeps.
        let extensions = request.extensions_mut();
        if let Some(limit) = self.timeout {
            extensions.insert(RequestTimeout(limit));
        }
        if streaming {
            extensions.insert(Streaming);
            extensions.insert(HoldSlot);
        }
        Ok(request)
    }
}

/// A body serialized as JSON, or the `Request` error that says why it is not.
pub(super) fn json_body<T: Serialize + ?Sized>(body: &T) -> Result<Option<Bytes>, Error> {
    serde_json::to_vec(body)
        .map(|v| Some(Bytes::from(v)))
        .map_err(|e| {
            Error::new(ErrorKind::Request)
                .with_message(format!("the body does not serialize to JSON: {e}"))
                .with_source(e)
        })
}

/// A call's path, written without building it.
struct CallPath<'a> {
    base: &'a str,
    endpoint: &'a str,
}

impl fmt::Display for CallPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.base.is_empty() && self.endpoint.is_empty() {
            return f.write_str("/");
        }
        f.write_str(self.base)?;
        f.write_str(self.endpoint)
    }
}
