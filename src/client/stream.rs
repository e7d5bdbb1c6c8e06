//! Sending a streamed call: one pass through the stack, whose
//! [`ReadAheadLayer`](crate::read_ahead::ReadAheadLayer) keeps each attempt open
//! until the answer's first line, so that the retry layer (with its budget,
//! `Retry-After`, the deadline and its stats) retries a stream that fails
//! before it, and nothing retries one after it.

use http_body_util::{BodyExt, Limited};

use super::call::{Call, Limits};
use super::future::Exec;
use super::http_client::{HttpClient, StackBody};
use super::stream_response::{NextStream, Restarter};
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

/// [`send_streaming`], with a stream that restarts on the same provider when
/// it breaks after content (see `StreamRequestBuilder::restart_on_cut`).
pub(super) async fn send_restartable(
    client: HttpClient,
    call: Call,
) -> Result<StreamResponse, Error> {
    let template = call.duplicate();
    let ends = call
        .deadline
        .or(client.inner.config.retry.total_timeout)
        .and_then(|total| tokio::time::Instant::now().checked_add(total));
    let stream = send_streaming(client.clone(), call).await?;
    Ok(match template {
        Some(template) => stream.with_restarter(restarter(client, template, ends, 0)),
        None => stream,
    })
}

/// Whether a stream that broke with `error` may be sent again: a broken or
/// stalled body, or an error inside it that a retry could fix.
fn restartable(error: &Error) -> bool {
    !error.is_deadline()
        && (matches!(
            error.kind(),
            ErrorKind::Body | ErrorKind::Timeout | ErrorKind::Transport
        ) || error
            .status()
            .is_some_and(|s| s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS))
}

/// What restarts `template` on `client` after its `restarts`th restart.
fn restarter(
    client: HttpClient,
    template: Call,
    ends: Option<tokio::time::Instant>,
    restarts: u32,
) -> Restarter {
    Box::new(move |error: &Error| {
        let config = &client.inner.config;
        if restarts >= config.max_retries
            || !restartable(error)
            || !template.safe_to_repeat(&client)
        {
            return None;
        }
        let wait = config.retry_config().delay_for_attempt(restarts);
        let now = tokio::time::Instant::now();
        if ends.is_some_and(|ends| now + wait >= ends) {
            return None;
        }
        tracing::warn!(
            error = %error,
            wait_secs = wait.as_secs_f64(),
            "stream broke after content: restarting it on the same provider"
        );
        let next: NextStream = Box::pin(async move {
            tokio::time::sleep(wait).await;
            let mut call = template.duplicate().ok_or_else(|| {
                Error::new(ErrorKind::Request).with_message("the call cannot be made again")
            })?;
            if let Some(ends) = ends {
                call.deadline = Some(ends.saturating_duration_since(tokio::time::Instant::now()));
            }
            let stream = send_streaming(client.clone(), call).await?;
            Ok(stream.with_restarter(restarter(client, template, ends, restarts + 1)))
        });
        Some(next)
    })
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
