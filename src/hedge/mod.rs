//! Hedged attempts (the client's `hedge` setting): after a delay with no
//! answer, an idempotent attempt gets a second copy on another connection,
//! and the first answer wins; the other is cancelled. Exposed as
//! [`client::Hedge`](crate::client::Hedge) and
//! [`client::HedgeStats`](crate::client::HedgeStats).

mod config;
mod latency;
mod layer;

pub use self::config::Hedge;
pub use self::layer::HedgeStats;
pub(crate) use self::layer::{HedgeLayer, HedgeService, NoHedge};
