//! A limit on calls in flight, with a bounded wait for a free slot.
//!
//! [`PoolLimitLayer`] lets at most `max` calls run through the inner service at
//! once. The slot is reserved in `poll_ready`, as tower's `ConcurrencyLimit`
//! does: while every slot is taken the service is not ready, so a
//! `tower::buffer::Buffer` or a balancer above it sees `Pending` rather than
//! a promise it cannot keep. The wait is bounded by the pool timeout: past it
//! the service reports ready and the call it takes fails at once with
//! [`PoolTimeout`], without touching the inner service (`poll_ready` itself
//! never fails, so a `Buffer` above keeps working once a slot frees). A pool
//! timeout is local congestion, not a sign that the remote service is sick, so
//! the classifiers neither retry it nor count it against the breaker.
//!
//! A layer above the pool that waits inside `call` holds the slot its
//! readiness reserved, unless it gives it back:
//! [`RateLimitLayer`](crate::rate_limit::RateLimitLayer) does, and makes the
//! stack below it ready again once the call's turn has come.
//!
//! Over a hyper-util client this caps the connections one provider can open (an
//! HTTP/1 connection carries one request at a time), which is how
//! [`HttpClient`](crate::HttpClient) enforces `max_connections` and
//! `pool_timeout`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use stache_resilience::pool::{PoolLimitLayer, PoolTimeout};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(PoolLimitLayer::new(1, Duration::from_millis(10)))
//!     .service_fn(|req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//! let res = svc.ready().await.unwrap().call(http::Request::new(())).await;
//! assert!(res.is_ok());
//! # }
//! ```

mod future;
mod layer;
mod service;

pub(crate) use self::future::PoolSlot;
pub use self::future::ResponseFuture;
pub use self::layer::PoolLimitLayer;
pub use self::service::{HoldSlot, PoolLimitService};
pub use crate::error::PoolTimeout;
