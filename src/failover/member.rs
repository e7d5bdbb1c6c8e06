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
}

/// What a [`ProviderGroup`](crate::failover::ProviderGroup) is made of, and what each of
/// its calls carries.
#[derive(Clone)]
pub(super) struct Roster {
    pub(super) members: Arc<Vec<Member>>,
    pub(super) move_on_when: Option<Predicate>,
    pub(super) deadline: Option<Duration>,
}
