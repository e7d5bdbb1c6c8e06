//! A deadline on each attempt, with a per-request override.
//!
//! [`TimeoutLayer::new(default)`](TimeoutLayer::new) fails a call that takes
//! longer than `default` with [`Elapsed`] (inside a [`BoxError`](crate::BoxError); it names the
//! limit). A request may carry its own limit as a [`RequestTimeout`] in its
//! extensions, which replaces the default for that request alone — a long batch
//! call on a provider whose usual calls are short.
//!
//! Placed below a retry layer, as [`HttpClient`](crate::HttpClient) does, the
//! limit applies to each attempt. The call as a whole is bounded by a
//! [`RequestDeadline`] in the request's extensions: each attempt then gets the
//! smaller of its limit and the time left, and an attempt the deadline cuts
//! fails with an [`Elapsed`] whose [`is_deadline`](Elapsed::is_deadline) is true,
//! which the retry layer never retries.
//!
//! A gRPC request (`content-type: application/grpc…`) also tells the server its
//! limit, the smaller of the attempt's and the deadline's time left, in a
//! `grpc-timeout` header (unless it has one), rounded up to at most 8 digits.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use stache_resilience::timeout::{Elapsed, RequestTimeout, TimeoutLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(1)))
//!     .service_fn(|_req: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok::<_, std::convert::Infallible>("done")
//!     });
//!
//! let err = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Elapsed>().unwrap().limit(), Duration::from_secs(1));
//!
//! let mut patient = http::Request::new(());
//! patient.extensions_mut().insert(RequestTimeout(Duration::from_secs(10)));
//! assert_eq!(svc.ready().await.unwrap().call(patient).await.unwrap(), "done");
//! # }
//! ```

pub mod future;
mod layer;
mod service;

pub use self::layer::TimeoutLayer;
pub use self::service::{RequestTimeout, TimeoutService};
pub use crate::deadline::RequestDeadline;
pub use crate::error::Elapsed;
