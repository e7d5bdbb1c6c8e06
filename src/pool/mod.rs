//! A limit on calls in flight, with a bounded wait for a free slot.
//!
//! [`PoolLimitLayer`] lets at most `max` calls run through the inner service at
//! once. A call that finds every slot taken waits for one, but no longer than the
//! pool timeout; then it fails with [`PoolTimeout`] without touching the inner
//! service. A pool timeout is local congestion, not a sign that the remote service
//! is sick, so the classifiers neither retry it nor count it against the breaker.
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
