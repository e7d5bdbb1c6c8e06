//! [`ProviderGroup`]: providers in priority order (its request methods are
//! in `request.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::logical::LogicalRequest;
use super::member::{Member, Roster, Shape};
use crate::client::HttpClient;
use crate::error::Error;

/// [`HttpClient`]s in priority order, called with one request API: a call
/// goes to the first provider, and moves on to the next when that one fails
/// in a way another may not. See the [module documentation](super).
///
/// Cheap to clone: clones share the clients (their breakers, pools and rate
/// limiters).
#[derive(Clone)]
pub struct ProviderGroup {
    pub(super) roster: Roster,
}

impl ProviderGroup {
    /// A group of `clients`, the first tried first. Each is named by its
    /// [`provider`](HttpClient::provider) (from
    /// [`HttpClient::for_provider`]), else `provider-1`, `provider-2`, … by
    /// position.
    ///
    /// A group of no client fails every call with a configuration error.
    pub fn new(clients: Vec<HttpClient>) -> Self {
        let mut group = ProviderGroup {
            roster: Roster {
                members: Arc::new(Vec::with_capacity(clients.len())),
                move_on_when: None,
                deadline: None,
            },
        };
        for client in clients {
            group.push(client, None);
        }
        group
    }

    /// Adds `client` last, with `shape` rewriting each call for its API (its
    /// endpoint, its body, its headers): a group can span APIs that differ,
    /// a local Ollama and a cloud API say. Builder-style.
    pub fn shaped<F>(mut self, client: HttpClient, shape: F) -> Self
    where
        F: Fn(&LogicalRequest) -> LogicalRequest + Send + Sync + 'static,
    {
        self.push(client, Some(Arc::new(shape)));
        self
    }

    /// Adds `client` last, sent each call as it is; builder-style.
    pub fn then(mut self, client: HttpClient) -> Self {
        self.push(client, None);
        self
    }

    /// Declares the context window, in tokens, of the provider added last
    /// (by [`new`](Self::new), [`then`](Self::then) or
    /// [`shaped`](Self::shaped)); builder-style, and nothing for a group of
    /// no provider. A call whose prompt a provider finds too long (a
    /// [`ContextLengthExceeded`](crate::provider::ProviderErrorKind::ContextLengthExceeded)
    /// error) moves on to the next provider that declares a larger window,
    /// whatever its method (nothing was processed), skipping the others; with
    /// none, it ends with that error.
    ///
    /// ```
    /// # fn build(small: stache_resilience::HttpClient, large: stache_resilience::HttpClient) {
    /// use stache_resilience::failover::ProviderGroup;
    ///
    /// let group = ProviderGroup::new(vec![small])
    ///     .context_window(128_000)
    ///     .then(large)
    ///     .context_window(1_000_000);
    /// # drop(group); }
    /// ```
    pub fn context_window(mut self, tokens: u32) -> Self {
        if let Some(last) = Arc::make_mut(&mut self.roster.members).last_mut() {
            last.context_window = Some(tokens);
        }
        self
    }

    /// Moves on also after any failure `predicate` accepts, for a call that
    /// is safe to repeat: a context-length error that one model answers with
    /// a `400` and a larger one would not, say. Builder-style.
    pub fn move_on_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Error) -> bool + Send + Sync + 'static,
    {
        self.roster.move_on_when = Some(Arc::new(predicate));
        self
    }

    /// Bounds every call as a whole, across every provider tried (each gets
    /// what is left); a call's own
    /// `GroupRequest::deadline` overrides it. Without one, each provider
    /// applies its own `total_timeout`. Builder-style.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.roster.deadline = Some(deadline);
        self
    }

    /// The providers' names, in the order they are tried.
    pub fn providers(&self) -> impl Iterator<Item = &str> + '_ {
        self.roster.members.iter().map(|m| &*m.name)
    }

    /// The providers' clients, in the order they are tried.
    pub fn clients(&self) -> impl Iterator<Item = &HttpClient> + '_ {
        self.roster.members.iter().map(|m| &m.client)
    }

    fn push(&mut self, client: HttpClient, shape: Option<Shape>) {
        let members = Arc::make_mut(&mut self.roster.members);
        let name: Arc<str> = match client.provider() {
            Some(name) => Arc::from(name),
            None => Arc::from(format!("provider-{}", members.len() + 1)),
        };
        members.push(Member {
            client,
            name,
            shape,
            context_window: None,
        });
    }
}

impl fmt::Debug for ProviderGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderGroup")
            .field("providers", &self.providers().collect::<Vec<_>>())
            .field(
                "context_windows",
                &self
                    .roster
                    .members
                    .iter()
                    .map(|m| m.context_window)
                    .collect::<Vec<_>>(),
            )
            .field("move_on_when", &self.roster.move_on_when.is_some())
            .field("deadline", &self.roster.deadline)
            .finish()
    }
}
