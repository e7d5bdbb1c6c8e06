//! [`ProviderFailure`]: how one provider of a failover group failed a call.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use super::ErrorKind;

/// How one provider of a [`ProviderGroup`](crate::failover::ProviderGroup)
/// failed a call, after its own retries; the group's
/// [`Error::attempts`](super::Error::attempts) lists one per provider tried,
/// in order.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    provider: Arc<str>,
    kind: ErrorKind,
    status: Option<StatusCode>,
}

impl ProviderFailure {
    pub(crate) fn new(provider: Arc<str>, kind: ErrorKind, status: Option<StatusCode>) -> Self {
        ProviderFailure {
            provider,
            kind,
            status,
        }
    }

    /// The provider's name in the group.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The kind of its failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status it answered, for a [`Status`](ErrorKind::Status) failure.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
}

impl fmt::Debug for ProviderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProviderFailure");
        d.field("provider", &&*self.provider)
            .field("kind", &self.kind);
        if let Some(status) = self.status {
            d.field("status", &status.as_u16());
        }
        d.finish()
    }
}
