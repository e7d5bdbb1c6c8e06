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

use crate::client::{NextStream, RequestBuilder, Response, Restarter, StreamResponse};
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
        GroupStreamRequest {
            request: self,
            restart: false,
        }
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
        let mut walk = Walk::new(
            self.group,
            self.request,
            self.deadline,
            self.idempotent,
            self.cost,
        )?;
        walk.next(&send, tag).await
    }
}

/// A group call on its way through the members: where it stands, and what
/// the members it left said.
struct Walk {
    group: Roster,
    request: LogicalRequest,
    ends: Option<tokio::time::Instant>,
    idempotent: Option<bool>,
    cost: Option<u32>,
    failures: Vec<ProviderFailure>,
    /// After a prompt too long for a member declaring this window, only
    /// members declaring a larger one may take the call.
    too_long_for: Option<Option<u32>>,
    /// The next member to try.
    at: usize,
    /// The member that answered last, and whether its call was safe to repeat.
    answered: Option<(usize, bool)>,
}

impl Walk {
    fn new(
        group: Roster,
        request: LogicalRequest,
        deadline: Option<Duration>,
        idempotent: Option<bool>,
        cost: Option<u32>,
    ) -> Result<Self, Error> {
        if group.members.is_empty() {
            return Err(Error::new(ErrorKind::Config)
                .with_message("the ProviderGroup has no provider to call"));
        }
        let started = tokio::time::Instant::now();
        Ok(Walk {
            ends: deadline.and_then(|d| started.checked_add(d)),
            group,
            request,
            idempotent,
            cost,
            failures: Vec::new(),
            too_long_for: None,
            at: 0,
            answered: None,
        })
    }

    fn eligible(&self, member: &Member) -> bool {
        self.too_long_for.is_none_or(|w| member.fits_more_than(w))
    }

    /// The next eligible member after `index`.
    fn after(&self, index: usize) -> Option<&Member> {
        self.group.members[index + 1..]
            .iter()
            .find(|m| self.eligible(m))
    }

    /// Tries the members from `at` on, until one answers or the call cannot
    /// go on.
    async fn next<T, F, Fut>(&mut self, send: &F, tag: fn(T, Arc<str>) -> T) -> Result<T, Error>
    where
        F: Fn(RequestBuilder) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let members = self.group.members.clone();
        for (index, member) in members.iter().enumerate().skip(self.at) {
            if !self.eligible(member) {
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
            if let Some(ends) = self.ends {
                builder =
                    builder.deadline(ends.saturating_duration_since(tokio::time::Instant::now()));
            }
            // While another provider could take the call, this one's retries
            // stop where moving on is faster (see `move_on`).
            let has_next = self.after(index).is_some();
            let error = match Elsewhere::new(send(builder), has_next).await {
                Ok(answer) => {
                    self.at = index + 1;
                    self.answered = Some((index, idempotent));
                    return Ok(tag(answer, member.name.clone()));
                }
                Err(error) => error,
            };
            if !self.goes_on(index, &error, idempotent) {
                return Err(
                    error.with_attempts(member.name.clone(), std::mem::take(&mut self.failures))
                );
            }
            let next = self.after(index).map_or("", |m| &*m.name);
            tracing::info!(
                provider = %member.name,
                next = %next,
                error = %error,
                "provider failed the call: trying the next"
            );
            self.failures
                .push(ProviderFailure::of(member.name.clone(), &error));
        }
        // The last provider's answer returned above.
        Err(Error::new(ErrorKind::Config).with_message("the ProviderGroup has no provider to call"))
    }

    /// Whether the call goes on from member `index`, which failed with
    /// `error`.
    fn goes_on(&mut self, index: usize, error: &Error, idempotent: bool) -> bool {
        let members = &self.group.members;
        let member = &members[index];
        let time_left = self
            .ends
            .is_none_or(|ends| ends > tokio::time::Instant::now());
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
                self.too_long_for = Some(
                    self.too_long_for
                        .map_or(window, |before| before.max(window)),
                );
                true
            }
            _ => {
                self.after(index).is_some()
                    && move_on(error, idempotent, self.group.move_on_when.as_ref())
            }
        };
        time_left && goes_on
    }
}

impl Walk {
    /// What restarts a stream this walk handed over, when it breaks: the
    /// next member, from the beginning, if the call may go on.
    fn restarter(mut self) -> Restarter {
        Box::new(move |error: &Error| {
            let (index, idempotent) = self.answered?;
            if error.is_deadline() || !self.goes_on(index, error, idempotent) {
                return None;
            }
            let member = &self.group.members[index];
            tracing::warn!(
                provider = %member.name,
                error = %error,
                "stream broke after content: restarting it on the next provider"
            );
            self.failures
                .push(ProviderFailure::of(member.name.clone(), error));
            let next: NextStream = Box::pin(async move {
                let stream = self
                    .next(&stream_send, StreamResponse::with_provider)
                    .await?;
                Ok(stream.with_restarter(self.restarter()))
            });
            Some(next)
        })
    }
}

/// How a group sends one member its part of a streamed call.
fn stream_send(builder: RequestBuilder) -> impl Future<Output = Result<StreamResponse, Error>> {
    builder.stream().send()
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
    restart: bool,
}

impl GroupStreamRequest {
    /// When the stream breaks after content (cut, stalled, an error inside
    /// it, ended without its end marker) and the call may go on (safe to
    /// repeat, time left, a provider left that may take it), starts it again
    /// from the beginning on the next provider, never continuing the partial
    /// answer. The caller learns of it through the stream: the read that
    /// met the break returns an error for which
    /// [`Error::is_stream_restarted`] is true; the reads after it are the
    /// new answer's (see
    /// [restarted streams](crate::client::StreamResponse#restarted-streams)).
    /// Off by default: a stream that breaks then ends with an error that
    /// says how much had come ([`Error::stream_cut`]).
    pub fn restart_on_cut(mut self) -> Self {
        self.restart = true;
        self
    }

    /// Sends the call; the same as `.await`.
    pub fn send(self) -> impl Future<Output = Result<StreamResponse, Error>> + Send + 'static {
        let restart = self.restart;
        let request = self.request;
        async move {
            if let Some(problem) = request.problem {
                return Err(problem);
            }
            let mut walk = Walk::new(
                request.group,
                request.request,
                request.deadline,
                request.idempotent,
                request.cost,
            )?;
            let stream = walk
                .next(&stream_send, StreamResponse::with_provider)
                .await?;
            Ok(if restart {
                stream.with_restarter(walk.restarter())
            } else {
                stream
            })
        }
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
