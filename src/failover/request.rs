//! The request methods of a [`ProviderGroup`], the builders they return, and
//! the call that goes from one provider to the next.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Serialize;

use super::decide::move_on;
use super::group::ProviderGroup;
use super::logical::LogicalRequest;
use super::member::{Member, Roster};
use crate::scope::Elsewhere;

use crate::client::{RequestBuilder, Response, StreamResponse};
use crate::error::{Error, ErrorKind, ProviderFailure};
use crate::provider::ProviderErrorKind;
use crate::retry::method_is_idempotent;

/// The request methods, named after HTTP's.
impl ProviderGroup {
    /// A `GET` of `endpoint`.
    pub fn get(&self, endpoint: impl Into<String>) -> GroupRequest {
        self.request(Method::GET, endpoint)
    }

    /// A `POST` of `body` as JSON to `endpoint`. A body that does not
    /// serialize fails the call when it is sent.
    pub fn post<T: Serialize + ?Sized>(
        &self,
        endpoint: impl Into<String>,
        body: &T,
    ) -> GroupRequest {
        let mut request = LogicalRequest::new(Method::POST, endpoint);
        match serde_json::to_value(body) {
            Ok(json) => {
                request.json = Some(json);
                GroupRequest::new(self.roster.clone(), request)
            }
            Err(e) => GroupRequest::new(self.roster.clone(), request).failed(
                Error::new(ErrorKind::Request)
                    .with_message(format!("the request body does not serialize as JSON: {e}"))
                    .with_source(e),
            ),
        }
    }

    /// A `PUT` of `endpoint`.
    pub fn put(&self, endpoint: impl Into<String>) -> GroupRequest {
        self.request(Method::PUT, endpoint)
    }

    /// A `DELETE` of `endpoint`.
    pub fn delete(&self, endpoint: impl Into<String>) -> GroupRequest {
        self.request(Method::DELETE, endpoint)
    }

    /// A call of `method` on `endpoint`, without a body.
    pub fn request(&self, method: Method, endpoint: impl Into<String>) -> GroupRequest {
        GroupRequest::new(self.roster.clone(), LogicalRequest::new(method, endpoint))
    }

    /// A call as a [`LogicalRequest`] gives it.
    pub fn send_request(&self, request: LogicalRequest) -> GroupRequest {
        GroupRequest::new(self.roster.clone(), request)
    }

    /// A `POST` of `body` as JSON whose answer is read as it arrives: the same
    /// as `group.post(endpoint, body).stream()`.
    pub fn stream_post<T: Serialize + ?Sized>(
        &self,
        endpoint: impl Into<String>,
        body: &T,
    ) -> GroupStreamRequest {
        self.post(endpoint, body).stream()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'static>>;

/// A call being prepared for a [`ProviderGroup`](ProviderGroup); `.await` it (or
/// [`send`](Self::send) it). From [`ProviderGroup::get`](ProviderGroup::get),
/// [`ProviderGroup::post`](ProviderGroup::post) and the other methods named after HTTP's.
#[must_use = "a request does nothing until it is awaited"]
pub struct GroupRequest {
    group: Roster,
    request: LogicalRequest,
    deadline: Option<Duration>,
    idempotent: Option<bool>,
    cost: Option<u32>,
    problem: Option<Error>,
}

impl GroupRequest {
    pub(super) fn new(group: Roster, request: LogicalRequest) -> Self {
        GroupRequest {
            deadline: group.deadline,
            group,
            request,
            idempotent: None,
            cost: None,
            problem: None,
        }
    }

    pub(super) fn failed(mut self, problem: Error) -> Self {
        self.problem.get_or_insert(problem);
        self
    }

    /// Bounds the call as a whole, across every provider tried, overriding
    /// the group's [`deadline`](ProviderGroup::deadline): each provider gets
    /// what is left of it.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Marks the call as safe to repeat or not, at every provider (as
    /// [`RequestBuilder::idempotent`]). A call that is not moves on only when
    /// the provider provably did not act on it.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Declares the tokens the call will consume, for each provider's rate
    /// limit (as [`RequestBuilder::cost`]).
    pub fn cost(mut self, tokens: u32) -> Self {
        self.cost = Some(tokens);
        self
    }

    /// Adds a header to the call at every provider.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.request.headers.append(name, value);
        self
    }

    /// Asks for the answer as a stream (NDJSON lines or server-sent events):
    /// `.await` the result to get a [`StreamResponse`]. The group moves on
    /// only while no line has arrived: once the stream is handed over, its
    /// failures are the caller's.
    pub fn stream(self) -> GroupStreamRequest {
        GroupStreamRequest { request: self }
    }

    /// Sends the call; the same as `.await`.
    pub fn send(self) -> impl Future<Output = Result<Response, Error>> + Send + 'static {
        self.run(|builder| builder.send(), Response::with_provider)
    }

    async fn run<T, F, Fut>(self, send: F, tag: fn(T, Arc<str>) -> T) -> Result<T, Error>
    where
        F: Fn(RequestBuilder) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let members = &self.group.members;
        if members.is_empty() {
            return Err(Error::new(ErrorKind::Config)
                .with_message("the ProviderGroup has no provider to call"));
        }
        let started = tokio::time::Instant::now();
        let ends = self.deadline.and_then(|d| started.checked_add(d));
        let mut failures: Vec<ProviderFailure> = Vec::new();
        // After a prompt too long for a member declaring this window, only
        // members declaring a larger one may take the call.
        let mut too_long_for: Option<Option<u32>> = None;
        let eligible = |m: &Member, too_long_for: Option<Option<u32>>| {
            too_long_for.is_none_or(|w| m.fits_more_than(w))
        };
        for (index, member) in members.iter().enumerate() {
            if !eligible(member, too_long_for) {
                continue;
            }
            let request = match &member.shape {
                Some(shape) => shape(&self.request),
                None => self.request.clone(),
            };
            let idempotent = self.idempotent.unwrap_or_else(|| {
                method_is_idempotent(&request.method)
                    || (request.method == Method::POST && member.client.config().post_is_idempotent)
            });
            let mut builder = builder(&request, member).idempotent(idempotent);
            if let Some(tokens) = self.cost {
                builder = builder.cost(tokens);
            }
            if let Some(ends) = ends {
                builder =
                    builder.deadline(ends.saturating_duration_since(tokio::time::Instant::now()));
            }
            // While another provider could take the call, this one's retries
            // stop where moving on is faster (see `move_on`).
            let next = members[index + 1..]
                .iter()
                .find(|m| eligible(m, too_long_for));
            let error = match Elsewhere::new(send(builder), next.is_some()).await {
                Ok(answer) => return Ok(tag(answer, member.name.clone())),
                Err(error) => error,
            };
            let time_left = ends.is_none_or(|ends| ends > tokio::time::Instant::now());
            let named = error.provider_error().map(|e| e.kind());
            let goes_on = match named {
                // The provider's reason is the caller's to see: no other
                // provider is asked to judge the same content.
                Some(ProviderErrorKind::ContentFiltered) => false,
                // A larger window helps, whatever the call's method: nothing
                // was processed. Without one declared, the usual rule (and
                // the caller's predicate) decides.
                Some(ProviderErrorKind::ContextLengthExceeded)
                    if members[index + 1..]
                        .iter()
                        .any(|m| m.fits_more_than(member.context_window)) =>
                {
                    let window = member.context_window;
                    too_long_for = Some(too_long_for.map_or(window, |before| before.max(window)));
                    true
                }
                _ => {
                    next.is_some() && move_on(&error, idempotent, self.group.move_on_when.as_ref())
                }
            };
            if !time_left || !goes_on {
                return Err(error.with_attempts(member.name.clone(), failures));
            }
            let next = members[index + 1..]
                .iter()
                .find(|m| eligible(m, too_long_for))
                .map_or("", |m| &*m.name);
            tracing::info!(
                provider = %member.name,
                next = %next,
                error = %error,
                "provider failed the call: trying the next"
            );
            failures.push(ProviderFailure::of(member.name.clone(), &error));
        }
        // The last provider's answer returned above.
        Err(Error::new(ErrorKind::Config).with_message("the ProviderGroup has no provider to call"))
    }
}

impl IntoFuture for GroupRequest {
    type Output = Result<Response, Error>;
    type IntoFuture = BoxFuture<Response>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for GroupRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupRequest")
            .field("request", &self.request)
            .field("deadline", &self.deadline)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

/// A streaming call being prepared for a [`ProviderGroup`](ProviderGroup); `.await` it to
/// get a [`StreamResponse`]. From [`GroupRequest::stream`].
#[must_use = "a request does nothing until it is awaited"]
#[derive(Debug)]
pub struct GroupStreamRequest {
    request: GroupRequest,
}

impl GroupStreamRequest {
    /// Sends the call; the same as `.await`.
    pub fn send(self) -> impl Future<Output = Result<StreamResponse, Error>> + Send + 'static {
        self.request.run(
            |builder| builder.stream().send(),
            StreamResponse::with_provider,
        )
    }
}

impl IntoFuture for GroupStreamRequest {
    type Output = Result<StreamResponse, Error>;
    type IntoFuture = BoxFuture<StreamResponse>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// `request` as `member`'s request builder.
fn builder(request: &LogicalRequest, member: &Member) -> RequestBuilder {
    let mut builder = member
        .client
        .request(request.method.clone(), &request.endpoint)
        .headers(request.headers.clone());
    if let Some(json) = &request.json {
        builder = builder.json(json);
    } else if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    builder
}
