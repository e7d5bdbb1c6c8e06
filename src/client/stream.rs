//! Sending a streamed call: retried, with the usual rules, until its headers
//! and its first line have arrived, and never after a line was handed over.

use http_body_util::{BodyExt, Limited};

use super::call::{Call, Limits};
use super::future::Exec;
use super::http_client::HttpClient;
use super::stream_response::{StreamLimits, StreamResponse};
use super::transport::ClientBody;
use crate::error::{Error, ErrorKind, MAX_ERROR_BODY_BYTES};
use crate::request_id::RequestId;

/// Sends a streaming request; returns once its first line (or its end) has
/// arrived.
///
/// The stack retries what fails before the headers. A failure after them and
/// before the first line (the connection breaks, no data within
/// `stream_idle_timeout`) sends the call again, for an idempotent call, up to
/// `max_retries` times in all, with the client's backoff, and never past the
/// call's deadline. Once the first line is read the stream is the caller's: a
/// later failure ends it with an error.
pub(super) async fn send_streaming(
    client: HttpClient,
    mut call: Call,
) -> Result<StreamResponse, Error> {
    let client = &client;
    let result = async {
        // As `Exec` does: the caller's ID, else the handled request's, else a
        // fresh one; an inherited ID is left for each send to find again, so
        // that its span does not name it a second time.
        let given = call.request_id.take();
        let inherited = given.is_none().then(crate::request_id::current).flatten();
        let id = given
            .or_else(|| inherited.clone())
            .unwrap_or_else(RequestId::generate);
        let limits = call
            .limits(client)
            .map_err(|e| e.with_request_id(id.clone()))?;
        let config = &client.inner.config;
        let idempotent = call.is_idempotent(client);
        let mut backoff = config.retry_config().backoff();
        let mut sends = 0u32;
        let mut next = Some(call);
        loop {
            let Some(mut this) = next.take() else {
                unreachable!("a send is only scheduled with a call to send")
            };
            sends += 1;
            if idempotent && sends <= config.max_retries {
                next = this.try_clone();
            }
            this.request_id = inherited.is_none().then(|| id.clone());
            let (response, id) =
                Exec::with_limits(client.clone(), this, true, limits.clone()).await?;
            let mut stream = streamed(client, response, id, &limits).await?;
            let (error, retryable) = match stream.prime().await {
                Ok(()) => return Ok(stream),
                Err(failed) => failed,
            };
            drop(stream);
            let delay = backoff.next_delay();
            let in_time = limits.deadline.as_ref().is_none_or(|d| {
                tokio::time::Instant::now()
                    .checked_add(delay)
                    .is_some_and(|end| end < d.at)
            });
            if !(retryable && next.is_some() && in_time) {
                return Err(error);
            }
            tracing::info!(
                send = sends,
                "stream failed before its first line: {error}. Sending again in {:.2}s",
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }
    .await;
    client.counted(result)
}

/// Turns the head of a streamed answer into the caller's result.
async fn streamed(
    client: &HttpClient,
    response: http::Response<ClientBody>,
    id: RequestId,
    limits: &Limits,
) -> Result<StreamResponse, Error> {
    let config = &client.inner.config;
    let idle = config.stream_idle_timeout;
    let (parts, body) = response.into_parts();
    let body = match body {
        ClientBody::Streaming(body) => body,
        // An error answer made in the process (an injected fault).
        ClientBody::Buffered(bytes) if !parts.status.is_success() => {
            return Err(Error::from_status(parts.status, parts.headers, &bytes).with_request_id(id));
        }
        ClientBody::Buffered(_) => {
            return Err(Error::new(ErrorKind::Body)
                .with_message("bad response body: expected a streamed body")
                .with_request_id(id));
        }
    };
    if !parts.status.is_success() {
        // Keep the start of the error body, without waiting on a stalled one.
        let wait = limits.deadline.as_ref().map_or(idle, |d| {
            idle.min(d.at.saturating_duration_since(tokio::time::Instant::now()))
        });
        let text = tokio::time::timeout(wait, Limited::new(body, MAX_ERROR_BODY_BYTES).collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(Error::from_status(parts.status, parts.headers, &text).with_request_id(id));
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
    ))
}
