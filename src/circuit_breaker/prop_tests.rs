//! The breaker against a small reference model of its state machine, driven by
//! random sequences of admissions, outcomes, dropped calls, bare `record_*`
//! calls and clock advances.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::circuit_breaker::permit::{Handle, Permit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
struct ModelTicket {
    generation: u64,
    half_open: bool,
}

/// The rules of the state machine, written as plainly as possible.
#[derive(Debug)]
struct Model {
    threshold: u32,
    max_probes: u32,
    timeout_ms: u64,
    now_ms: u64,
    state: St,
    generation: u64,
    failures: u32,
    successes: u32,
    admitted: u32,
    reopen_at_ms: u64,
}

impl Model {
    fn new(threshold: u32, max_probes: u32, timeout_ms: u64) -> Self {
        Model {
            threshold,
            max_probes,
            timeout_ms,
            now_ms: 0,
            state: St::Closed,
            generation: 0,
            failures: 0,
            successes: 0,
            admitted: 0,
            reopen_at_ms: 0,
        }
    }

    fn go(&mut self, to: St) {
        self.generation += 1;
        self.state = to;
        self.successes = 0;
        self.admitted = 0;
        match to {
            St::Open => self.reopen_at_ms = self.now_ms + self.timeout_ms,
            St::Closed => self.failures = 0,
            St::HalfOpen => {}
        }
    }

    fn look(&mut self) -> St {
        if self.state == St::Open && self.now_ms >= self.reopen_at_ms {
            self.go(St::HalfOpen);
        }
        self.state
    }

    fn acquire(&mut self) -> Option<ModelTicket> {
        match self.look() {
            St::Closed => Some(ModelTicket {
                generation: self.generation,
                half_open: false,
            }),
            St::Open => None,
            St::HalfOpen if self.admitted < self.max_probes => {
                self.admitted += 1;
                Some(ModelTicket {
                    generation: self.generation,
                    half_open: true,
                })
            }
            St::HalfOpen => None,
        }
    }

    fn success(&mut self, generation: Option<u64>) {
        if generation.is_some_and(|g| g != self.generation) {
            return;
        }
        match self.state {
            St::Closed => self.failures = 0,
            St::Open => {}
            St::HalfOpen => {
                self.successes += 1;
                if self.successes >= self.max_probes {
                    self.go(St::Closed);
                }
            }
        }
    }

    fn failure(&mut self, generation: Option<u64>) {
        if generation.is_some_and(|g| g != self.generation) {
            return;
        }
        self.failures += 1;
        match self.state {
            St::Closed if self.failures >= self.threshold => self.go(St::Open),
            St::HalfOpen => self.go(St::Open),
            _ => {}
        }
    }

    fn give_back(&mut self, t: ModelTicket) {
        if t.half_open && self.state == St::HalfOpen && t.generation == self.generation {
            self.admitted = self.admitted.saturating_sub(1);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Settle the i-th held call (modulo how many are held).
    Settle(usize, u8),
    /// Drop the i-th held call unsettled.
    Drop(usize),
    RecordSuccess,
    RecordFailure,
    Advance(u64),
    State,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), 0u8..3).prop_map(|(i, v)| Op::Settle(i, v)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::RecordSuccess),
        1 => Just(Op::RecordFailure),
        2 => prop_oneof![Just(0u64), Just(1), Just(5), Just(20), Just(60)].prop_map(Op::Advance),
        1 => Just(Op::State),
    ]
}

fn to_st(s: CircuitState) -> St {
    match s {
        CircuitState::Closed => St::Closed,
        CircuitState::Open => St::Open,
        CircuitState::HalfOpen => St::HalfOpen,
    }
}

fn run(
    threshold: u32,
    max_probes: u32,
    timeout_ms: u64,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let cb = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: threshold,
            timeout: Duration::from_millis(timeout_ms),
            half_open_max_calls: max_probes,
        });
        let handle = Arc::new(Handle(cb.clone()));
        let mut model = Model::new(threshold, max_probes, timeout_ms);
        let mut held: Vec<(Permit, ModelTicket)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire => {
                    let real = Permit::acquire(&handle);
                    let expected = model.acquire();
                    prop_assert_eq!(
                        real.is_some(),
                        expected.is_some(),
                        "step {}: admission",
                        step
                    );
                    if let (Some(p), Some(t)) = (real, expected) {
                        prop_assert_eq!(p.ticket.half_open, t.half_open, "step {}", step);
                        held.push((p, t));
                    }
                }
                Op::Settle(i, v) if !held.is_empty() => {
                    let (permit, ticket) = held.remove(i % held.len());
                    match v {
                        0 => {
                            permit.settle(Verdict::Success);
                            model.success(Some(ticket.generation));
                        }
                        1 => {
                            permit.settle(Verdict::Failure);
                            model.failure(Some(ticket.generation));
                        }
                        _ => {
                            permit.settle(Verdict::Ignore);
                            model.give_back(ticket);
                        }
                    }
                }
                Op::Drop(i) if !held.is_empty() => {
                    let (permit, ticket) = held.remove(i % held.len());
                    drop(permit);
                    model.give_back(ticket);
                }
                Op::Settle(..) | Op::Drop(_) => {}
                Op::RecordSuccess => {
                    cb.record_success();
                    model.success(None);
                }
                Op::RecordFailure => {
                    cb.record_failure();
                    model.failure(None);
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now_ms += ms;
                }
                Op::State => {
                    prop_assert_eq!(to_st(cb.state()), model.look(), "step {}: state", step);
                }
            }
            // The counters agree after every step (stats() looks first, as the
            // model's `look` does).
            let stats = cb.stats();
            let state = model.look();
            prop_assert_eq!(to_st(stats.state), state, "step {}: {:?}", step, model);
            prop_assert_eq!(
                stats.failure_count,
                model.failures,
                "step {}: failures",
                step
            );
            let successes = if state == St::HalfOpen {
                model.successes
            } else {
                0
            };
            prop_assert_eq!(stats.success_count, successes, "step {}: successes", step);
            prop_assert_eq!(cb.shared.word.load(Ordering::SeqCst) >> 2, model.generation);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_breaker_follows_the_reference_model(
        threshold in 1u32..5,
        max_probes in 1u32..4,
        timeout_ms in prop_oneof![Just(0u64), Just(10), Just(50)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(threshold, max_probes, timeout_ms, ops)?;
    }
}
