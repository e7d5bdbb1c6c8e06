//! The breaker's state, how it shares one atomic word with a generation, and
//! the event each change of it gets.

use std::fmt;

/// The state of a [`CircuitBreaker`](super::CircuitBreaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CircuitState {
    /// Calls pass; consecutive failures are counted.
    Closed,
    /// Calls are refused until the recovery timeout has elapsed.
    Open,
    /// A limited number of test calls decide whether the service has recovered.
    HalfOpen,
}

impl CircuitState {
    /// The state's name as used in logs and stats: `closed`, `open` or `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    pub(super) const fn to_bits(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }

    pub(super) const fn from_bits(bits: u64) -> Self {
        match bits & STATE_MASK {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// The state and a generation number share one atomic word: the state in the low
// two bits, the generation (bumped by every transition) above them. One load tells
// a caller both what the circuit is doing and whether an outcome it is about to
// record still belongs to the period it was admitted in.
pub(super) const STATE_MASK: u64 = 0b11;
pub(super) const GENERATION_ONE: u64 = 0b100;

pub(super) const fn pack(state: CircuitState, generation: u64) -> u64 {
    (generation & !STATE_MASK) | state.to_bits()
}

/// One change of state, for its event.
pub(super) struct Transition {
    pub(super) from: CircuitState,
    pub(super) to: CircuitState,
    pub(super) failures: u32,
    /// The generation the transition started, counting from 1.
    pub(super) generation: u64,
    /// What opened the circuit (for a move to open).
    pub(super) reason: &'static str,
}

/// Emits the one event a transition gets. Called after the lock is released so a
/// slow subscriber never holds up other callers.
pub(super) fn announce(t: Transition) {
    let (from, to, failures, generation, reason) = (
        t.from.as_str(),
        t.to.as_str(),
        t.failures,
        t.generation,
        t.reason,
    );
    match t.to {
        CircuitState::Open => {
            tracing::warn!(
                from,
                to,
                failures,
                generation,
                reason,
                "circuit breaker opened"
            )
        }
        CircuitState::HalfOpen => tracing::info!(
            from,
            to,
            generation,
            "circuit breaker half-open: admitting test calls"
        ),
        CircuitState::Closed => tracing::info!(from, to, generation, "circuit breaker closed"),
    }
}
