//! Sending a streamed call: one pass through the stack, whose
//! [`ReadAheadLayer`](crate::read_ahead::ReadAheadLayer) keeps each attempt open
//! until the answer's first line, so that the retry layer (with its budget,
//! `Retry-After`, the deadline and its stats) retries a stream that fails
//! before it, and nothing retries one after it.

use http_body_util::{BodyExt, Limited};

use super::call::{Call, Limits};
use super::future::Exec;
use super::http_client::{HttpClient, StackBody};
use super::stream_response::{StreamLimits, StreamResponse};
use super::transport::ClientBody;
use crate::error::{Error, ErrorKind, MAX_ERROR_BODY_BYTES};
use crate::provider::ProviderError;
use crate::provider::dialect::StreamDialect;
use crate::read_ahead::InBand;
use crate::request_id::RequestId;

/// Sends a streaming request; returns once its first line (or its end) has
/// arrived.
///
/// A failure before the first line (the headers never come, the connection
/// breaks, no data within `stream_idle_timeout`) is an attempt's, retried by
/// the stack's retry layer with the usual rules: at most `max_retries` more
/// attempts, only for a call safe to repeat once the head has come, never past
/// the call's deadline. Once the first line is read the stream is the
/// caller's: a later failure ends it with an error.
pub(super) async fn send_streaming(
    client: HttpClient,
    call: Call,
) -> Result<StreamResponse, Error> {
    let result = async {
        let limits = call.limits(&client)?;
        let dialect = call.dialect(&client);
        let (response, id) = Exec::with_limits(client.clone(), call, true, limits.clone()).await?;
        let mut stream = streamed(&client, response, id, &limits, dialect).await?;
        // The read-ahead stopped at the end of the first line that is not
        // empty (or at the body's end, or past `max_line_bytes`), so this
        // reads from memory, and fails only on what the line holds (too long,
        // not UTF-8): the server's answer, not retried. (A bare `\r` ends a
        // line for the read-ahead but not for an NDJSON reader, which then
        // reads on.)
        stream.prime().await?;
        Ok(stream)
    }
    .await;
    client.counted(result)
}

/// Turns the head of a streamed answer into the caller's result.
async fn streamed(
    client: &HttpClient,
    response: http::Response<StackBody>,
    id: RequestId,
    limits: &Limits,
    dialect: Option<StreamDialect>,
) -> Result<StreamResponse, Error> {
    let config = &client.inner.config;
    let idle = config.stream_idle_timeout;
    let (parts, body) = response.into_parts();
    if !parts.status.is_success() {
        let text = match body.into_unread() {
            // An error answer made in the process (an injected fault).
            Ok(ClientBody::Buffered(bytes)) => bytes,
            // Keep the start of the error body, without waiting on a stalled one.
            Ok(body @ ClientBody::Streaming(_)) => {
                let wait = limits.deadline.as_ref().map_or(idle, |d| {
                    idle.min(d.at.saturating_duration_since(tokio::time::Instant::now()))
                });
                tokio::time::timeout(wait, Limited::new(body, MAX_ERROR_BODY_BYTES).collect())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|c| c.to_bytes())
                    .unwrap_or_default()
            }
            Err(_) => bytes::Bytes::new(),
        };
        let mut error = Error::from_status(parts.status, parts.headers, &text).with_request_id(id);
        // An error sent inside a 2xx stream, answered as its status.
        if let Some(named) = parts.extensions.get::<ProviderError>() {
            if let Some(InBand(status)) = parts.extensions.get::<InBand>() {
                error = error.with_message(format!(
                    "the provider sent an error inside its {status} stream before any content: {named}"
                ));
            }
            error = error.with_provider_error(named.clone());
        }
        return Err(error);
    }
    if !body.was_read_ahead() && matches!(body.get_ref(), ClientBody::Buffered(_)) {
        return Err(Error::new(ErrorKind::Body)
            .with_message("bad response body: expected a streamed body")
            .with_request_id(id));
    }
    let bounds = StreamLimits {
        idle_timeout: idle,
        max_line_bytes: config.max_line_bytes,
        max_stream_bytes: config.max_stream_bytes,
    };
    Ok(StreamResponse::new(
        http::Response::from_parts(parts, body),
        id,
        bounds,
        limits.deadline.as_deref(),
        dialect,
    ))
}
