//! Restarting a stream that broke after content: the next attempt of the
//! call, from the beginning, swapped in behind the caller's
//! [`StreamResponse`], with an error the caller cannot miss in between.

use std::task::{Context, Poll, ready};

use super::{Restart, Restarter, StreamResponse};

/// One read of a stream: a line or an event.
type Read<T> = fn(&mut StreamResponse, &mut Context<'_>) -> Poll<Result<Option<T>, Error>>;
use crate::error::Error;

impl StreamResponse {
    /// Lets `restarter` restart the call when this stream breaks after it
    /// was handed over.
    pub(crate) fn with_restarter(mut self, restarter: Restarter) -> Self {
        self.restart = Some(std::sync::Mutex::new(Restart {
            restarter: Some(restarter),
            pending: None,
        }));
        self
    }

    /// Reads with `read`; when the stream breaks for the first time and the
    /// call can restart, waits for the new stream and puts it in place.
    pub(super) fn poll_restarting<T>(
        &mut self,
        cx: &mut Context<'_>,
        read: Read<T>,
    ) -> Poll<Result<Option<T>, Error>> {
        if self.restart.is_none() {
            return read(self, cx);
        }
        loop {
            if let Some(restart) = self.restart.as_mut() {
                let restart = restart
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((next, _)) = &mut restart.pending {
                    let result = ready!(next.as_mut().poll(cx));
                    let Some((_, cause)) = restart.pending.take() else {
                        unreachable!("checked above");
                    };
                    return Poll::Ready(Err(self.restarted(result, cause)));
                }
            }
            let first_failure = self.failed.is_none();
            let error = match ready!(read(self, cx)) {
                Err(error) if first_failure => error,
                other => return Poll::Ready(other),
            };
            let Some(restart) = self.restart.as_mut() else {
                return Poll::Ready(Err(error));
            };
            let restart = restart
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(next) = restart.restarter.take().and_then(|r| r(&error)) else {
                return Poll::Ready(Err(error));
            };
            restart.pending = Some((next, error));
        }
    }

    /// The error the read that met the break returns: the stream restarted
    /// (the new one now in place), or the original error, with how the
    /// restart failed.
    fn restarted(&mut self, result: Result<StreamResponse, Error>, cause: Error) -> Error {
        match result {
            Ok(new) => {
                let restarts = self.restarts.saturating_add(1);
                let from = self.provider.clone();
                *self = new;
                self.restarts = restarts;
                let to = self.provider.as_deref().unwrap_or("the same provider");
                let from = from.as_deref().unwrap_or("the provider");
                let message = format!(
                    "the stream from {from} broke ({cause}); it restarted from the beginning \
                     on {to}: discard what was read before, and read on"
                );
                cause.restarted(message)
            }
            Err(failed) => cause.restart_failed(failed),
        }
    }
}
