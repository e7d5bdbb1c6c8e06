//! The members of a group as a call sees them: [`Roster`].

use std::sync::Arc;
use std::time::Duration;

use super::decide::Predicate;
use super::logical::LogicalRequest;
use crate::client::HttpClient;

/// Rewrites a call for one provider's API.
pub(super) type Shape = Arc<dyn Fn(&LogicalRequest) -> LogicalRequest + Send + Sync>;

/// One provider of a group.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) client: HttpClient,
    pub(super) name: Arc<str>,
    pub(super) shape: Option<Shape>,
    /// The context window it declares, in tokens.
    pub(super) context_window: Option<u32>,
}

impl Member {
    /// Whether this member may take a call whose prompt was too long for a
    /// member declaring `window` (`None`: none declared): its own window is
    /// declared, and larger.
    pub(super) fn fits_more_than(&self, window: Option<u32>) -> bool {
        match (self.context_window, window) {
            (Some(own), Some(window)) => own > window,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// What a [`ProviderGroup`](crate::failover::ProviderGroup) is made of, and what each of
/// its calls carries.
#[derive(Clone)]
pub(super) struct Roster {
    pub(super) members: Arc<Vec<Member>>,
    pub(super) move_on_when: Option<Predicate>,
    pub(super) deadline: Option<Duration>,
}
