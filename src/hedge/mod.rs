//! Hedged requests: after a delay with no answer, an idempotent request gets
//! a second copy (on another connection, through a pooled client), and the
//! first good answer wins; the other is cancelled.
//!
//! [`HedgeLayer`] works over any tower client whose requests the retry layer
//! can copy ([`HedgeRequest`]: `http::Request` over hyper-util, tonic or axum,
//! and `reqwest::Request`), with the retry layer's rule for what is safe to
//! repeat: an idempotent method, or the request's own mark
//! ([`Idempotent`](crate::retry::Idempotent),
//! [`SAFE_TO_REPEAT`](crate::retry::SAFE_TO_REPEAT); over reqwest, whose
//! requests cannot keep the header's word, a hedge below a retry layer sees the
//! method alone); never a request marked [`NoHedge`] (a stream). The delay is fixed, or a percentile of recent
//! answers' latency (with a stated fallback until 64 calls were measured).
//!
//! Copies are bounded by a budget: each hedgeable call adds
//! [`max_extra_load`](Hedge::max_extra_load) of a copy (10% by default), and a
//! new layer starts with [`burst`](Hedge::burst) copies (5), so that a cold
//! client can hedge at once and a long run never sends more than its share.
//! Given a retry budget ([`HedgeLayer::budget`]), copies draw on it too.
//!
//! Put it below a [`RetryLayer`](crate::RetryLayer) (a copy is part of one
//! attempt) and above the per-attempt timeout and the pool, as
//! [`HttpClient`](crate::HttpClient) does with its `hedge` setting.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use std::time::Duration;
//! use stache_resilience::hedge::{Hedge, HedgeLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let sent = Arc::new(AtomicU32::new(0));
//! let count = sent.clone();
//! let hedge = HedgeLayer::new(Hedge::fixed(Duration::from_millis(100))).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(hedge.clone())
//!     .service_fn(move |_req: http::Request<String>| {
//!         // The first copy is stuck; the second answers at once.
//!         let slow = count.fetch_add(1, Ordering::SeqCst) == 0;
//!         async move {
//!             if slow {
//!                 tokio::time::sleep(Duration::from_secs(30)).await;
//!             }
//!             Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!         }
//!     });
//!
//! let started = tokio::time::Instant::now();
//! let req = http::Request::get("/v1/models").body(String::new()).unwrap();
//! svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(started.elapsed(), Duration::from_millis(100));
//! assert_eq!((hedge.stats().sent, hedge.stats().won), (1, 1));
//! # }
//! ```

mod config;
pub mod future;
mod latency;
mod layer;
mod shared;

pub use self::config::{DEFAULT_BURST, Hedge};
pub use self::layer::{HedgeLayer, HedgeRequest, HedgeService, HedgeStats, NoHedge};
