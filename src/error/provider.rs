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
    named: Option<crate::provider::ProviderError>,
}

impl ProviderFailure {
    /// The failure `error` of `provider`.
    pub(crate) fn of(provider: Arc<str>, error: &super::Error) -> Self {
        ProviderFailure {
            provider,
            kind: error.kind(),
            status: error.status(),
            named: error.provider_error(),
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

    /// What the provider's error said, by name (see
    /// [`Error::provider_error`](super::Error::provider_error)).
    pub fn provider_error(&self) -> Option<&crate::provider::ProviderError> {
        self.named.as_ref()
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
        if let Some(named) = &self.named {
            d.field("provider_error", &named.kind());
        }
        d.finish()
    }
}
