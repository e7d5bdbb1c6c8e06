//! Error messages that name the limit or setting that fired.

use std::error::Error as StdError;

use super::call::Limits;
use super::config::HttpClientConfig;
use crate::error::{Elapsed, Error, ErrorKind, StreamStalled, WriteStalled, chain};

/// Gives a call's timeout error the sentence that names what fired: the call's
/// deadline, its attempt timeout, the connect or the write timeout. Any other
/// error, or one that already has a message, is returned as it was.
pub(super) fn explain(error: Error, limits: &Limits, config: &HttpClientConfig) -> Error {
    if error.has_message() || !matches!(error.kind(), ErrorKind::Timeout | ErrorKind::Connect) {
        return error;
    }
    if error.is_deadline() {
        if let Some(deadline) = &limits.deadline {
            let attempts = deadline.attempts.get();
            let plural = if attempts == 1 { "" } else { "s" };
            let message = format!(
                "deadline of {:?} exceeded after {attempts} attempt{plural}",
                deadline.total
            );
            return error.with_message(message);
        }
        return error;
    }
    let cause = StdError::source(&error).and_then(|source| {
        chain(source).find_map(|e| {
            if let Some(elapsed) = e.downcast_ref::<Elapsed>() {
                return Some(Cause::Attempt(elapsed.limit()));
            }
            if let Some(stalled) = e.downcast_ref::<StreamStalled>() {
                return Some(if stalled.is_first_content() {
                    Cause::NoContent(stalled.idle())
                } else {
                    Cause::Stalled(stalled.idle())
                });
            }
            if e.is::<WriteStalled>() {
                return Some(Cause::Socket);
            }
            e.downcast_ref::<std::io::Error>()
                .filter(|io| io.kind() == std::io::ErrorKind::TimedOut)
                .map(|_| Cause::Socket)
        })
    });
    let message = match (cause, error.kind()) {
        (Some(Cause::Attempt(limit)), _) => {
            let setting = if limits.timeout.is_some() {
                "timeout"
            } else {
                "default_timeout"
            };
            format!("request timed out after {limit:?} ({setting})")
        }
        (Some(Cause::Stalled(idle)), _) => {
            format!("stream sent no data for {idle:?} before its first line (stream_idle_timeout)")
        }
        (Some(Cause::NoContent(limit)), _) => {
            format!("stream sent no content within {limit:?} of the request (first_token_timeout)")
        }
        (Some(Cause::Socket), ErrorKind::Connect) => format!(
            "connect timed out after {:?} (connect_timeout)",
            config.connect_timeout
        ),
        (Some(Cause::Socket), _) => format!(
            "request write stalled for {:?} (write_timeout)",
            config.write_timeout
        ),
        (None, _) => return error,
    };
    error.with_message(message)
}

enum Cause {
    /// The attempt's own limit.
    Attempt(std::time::Duration),
    /// A socket operation timed out: the connect, or a stalled write.
    Socket,
    /// A stream sent nothing before its first line.
    Stalled(std::time::Duration),
    /// A stream sent no content within its first-token limit.
    NoContent(std::time::Duration),
}
