//! When a group moves on to its next provider: the failures another provider
//! may not have, and the replay rule of "the call as a whole".

use crate::error::{Error, ErrorKind};

/// A caller's own reason to move on, from
/// [`ProviderGroup::move_on_when`](super::ProviderGroup::move_on_when).
pub(super) type Predicate = std::sync::Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// Whether the provider refused the account rather than the call (a spent
/// quota, a refused key): the next provider, with its own account, may not.
#[cold]
fn account_refused(error: &Error) -> bool {
    error.status().is_some_and(|s| s.is_client_error())
        && error
            .provider_error()
            .is_some_and(|e| e.kind().is_final_for_provider())
}

/// Whether a call that failed with `error` at one provider goes to the next.
///
/// * Nothing was sent, or the provider provably did not act on it: the
///   circuit was open, the connection could not be made, no pool slot came
///   free, the rate limit would have waited past the deadline, a final
///   `429`, or the provider refused the account (a spent quota, a refused
///   key). Any call moves on.
/// * It may have been processed: a 5xx after the provider's own retries, a
///   timeout, a connection or body broken after sending. Only a call that is
///   safe to repeat moves on.
/// * Whatever `predicate` accepts (a context-length error one model answers
///   and a larger one does not), for a call that is safe to repeat.
/// * Never once the group's deadline has passed.
pub(super) fn move_on(error: &Error, idempotent: bool, predicate: Option<&Predicate>) -> bool {
    if error.is_deadline() {
        return false;
    }
    let kind = error.kind();
    let unprocessed = matches!(
        kind,
        ErrorKind::CircuitOpen
            | ErrorKind::Connect
            | ErrorKind::PoolTimeout
            | ErrorKind::RateLimited
    ) || error.status() == Some(http::StatusCode::TOO_MANY_REQUESTS)
        || crate::classify::error_is_unprocessed(error)
        || account_refused(error);
    if unprocessed {
        return true;
    }
    if !idempotent {
        return false;
    }
    let transient = matches!(
        kind,
        ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::Body
    ) || error.status().is_some_and(|s| s.is_server_error());
    transient || predicate.is_some_and(|p| p(error))
}
