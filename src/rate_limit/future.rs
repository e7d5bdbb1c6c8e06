//! The response future of [`RateLimitService`](super::RateLimitService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::limiter::{RateLimiter, Ticket};
use super::tokens::TokenReservation;
use super::turn::Turn;
use super::window::Place;
use crate::error::BoxError;

pin_project! {
    /// The future returned by [`RateLimitService`](super::RateLimitService):
    /// the call's turn, then the call, whose answer the limiter reads.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        limiter: RateLimiter,
        // The attempt's place in the cold-start window, given back when it
        // ends or is dropped.
        place: Option<Place>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        // Boxed, so that a call that goes at once carries no room for a wait.
        Waiting { turn: Box<Turn>, service: Option<S>, request: Option<Req> },
        // The turn came: the service is made ready now, so that a slot below
        // (a pool's) is not held through the wait for the turn.
        Readying { service: S, request: Option<Req>, ticket: Ticket },
        Called { #[pin] future: S::Future, ticket: Ticket },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(super) fn called(future: S::Future, limiter: RateLimiter, place: Option<Place>) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                ticket: Ticket::default(),
            },
            limiter,
            place,
        }
    }

    pub(super) fn waiting(
        turn: Turn,
        service: S,
        request: Req,
        limiter: RateLimiter,
        place: Option<Place>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                turn: Box::new(turn),
                service: Some(service),
                request: Some(request),
            },
            limiter,
            place,
        }
    }
}

impl<S, Req, RB> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<http::Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    turn,
                    service,
                    request,
                } => {
                    let ticket = ready!(Pin::new(&mut **turn).poll(cx))?;
                    let Some(service) = service.take() else {
                        panic!("the rate limit's future polled after completion");
                    };
                    let request = request.take();
                    this.state.set(State::Readying {
                        service,
                        request,
                        ticket,
                    });
                }
                StateProj::Readying {
                    service,
                    request,
                    ticket,
                } => {
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let Some(request) = request.take() else {
                        panic!("the rate limit's future polled after completion");
                    };
                    let ticket = *ticket;
                    let future = service.call(request);
                    this.state.set(State::Called { future, ticket });
                }
                StateProj::Called { future, ticket } => {
                    let mut result = ready!(future.poll(cx)).map_err(Into::into);
                    if ticket.tokens > 0 {
                        // A 2xx answer's tokens are settled from its usage;
                        // any other answer, or none, was charged nothing.
                        let tokens = TokenReservation::new(this.limiter.owner(), ticket.tokens);
                        match &mut result {
                            Ok(response) if response.status().is_success() => {
                                response.extensions_mut().insert(tokens);
                            }
                            _ => tokens.give_back(),
                        }
                    }
                    if let Ok(response) = &result {
                        if let Some(place) = this.place.take() {
                            place.answered(response.status());
                        }
                        if response.status().is_client_error() {
                            if let Some(kind) = crate::classify::account_error(response) {
                                this.limiter.cool_down(kind);
                            }
                        }
                        this.limiter
                            .report(*ticket, response.status(), response.headers());
                    }
                    *this.place = None;
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
