//! Model checks of the breaker's shared state with loom: every interleaving of
//! a few threads around each transition. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`.

use std::time::Duration;

use loom::thread;

use super::*;
use crate::circuit_breaker::permit::{Handle, Permit};
use crate::circuit_breaker::window::{Counts, Window};
use crate::circuit_breaker::{OpenBackoff, TripPolicy};

fn breaker(threshold: u32, half_open: u32) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: threshold,
        // Zero: an open circuit may be probed at once, so the model needs no clock.
        timeout: Duration::ZERO,
        half_open_max_calls: half_open,
    })
}

/// Runs `f` under loom with a bounded number of preemptions (as tokio does with
/// `LOOM_MAX_PREEMPTIONS=2`), so that three-thread models finish in seconds.
/// `LOOM_MAX_PREEMPTIONS` overrides the bound.
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

fn word(cb: &CircuitBreaker) -> u64 {
    cb.shared.word.load(Ordering::SeqCst)
}

fn transitions(cb: &CircuitBreaker) -> u64 {
    cb.shared.transitions.load(Ordering::SeqCst)
}

/// Settles each ticket as a failure, each on a thread of its own.
fn fail_on_threads<const N: usize>(cb: &CircuitBreaker, tickets: [Ticket; N]) {
    let threads: Vec<_> = tickets
        .into_iter()
        .map(|ticket| {
            let cb = cb.clone();
            thread::spawn(move || cb.settle(ticket, Verdict::Failure))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn admitted(cb: &CircuitBreaker) -> u32 {
    lock(&cb.shared.probes).admitted
}

#[test]
fn loom_two_probes_never_share_one_slot() {
    model(|| {
        let cb = breaker(1, 1);
        cb.record_failure(); // open; recovery due at once
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let cb = cb.clone();
                thread::spawn(move || cb.admit().filter(|t| t.half_open()).map(|t| t.generation()))
            })
            .collect();
        let got: Vec<Option<u64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let probes: Vec<u64> = got.into_iter().flatten().collect();
        assert_eq!(
            probes.len(),
            1,
            "exactly one probe in the period: {probes:?}"
        );
        assert_eq!(CircuitState::from_bits(word(&cb)), CircuitState::HalfOpen);
        assert_eq!(admitted(&cb), 1);
    });
}

#[test]
fn loom_concurrent_failures_open_the_circuit_exactly_once() {
    model(|| {
        // Three failures against a threshold of two: two threads can both see
        // the count at or past the threshold.
        let cb = breaker(2, 1);
        let tickets = [
            cb.admit().unwrap(),
            cb.admit().unwrap(),
            cb.admit().unwrap(),
        ];
        fail_on_threads(&cb, tickets);
        let w = word(&cb);
        assert_eq!(CircuitState::from_bits(w), CircuitState::Open);
        assert_eq!(w >> 2, 1);
        assert_eq!(transitions(&cb), 1, "one transition, not two");
    });
}

#[test]
fn loom_a_failure_racing_a_success_in_half_open_always_reopens() {
    model(|| {
        let cb = breaker(1, 2);
        cb.record_failure();
        let a = cb.admit().unwrap();
        let b = cb.admit().unwrap();
        assert!(a.half_open() && b.half_open());
        let cb1 = cb.clone();
        let t1 = thread::spawn(move || cb1.settle(a, Verdict::Success));
        let cb2 = cb.clone();
        let t2 = thread::spawn(move || cb2.settle(b, Verdict::Failure));
        t1.join().unwrap();
        t2.join().unwrap();
        let w = word(&cb);
        assert_eq!(CircuitState::from_bits(w), CircuitState::Open);
        // closed -> open -> half_open -> open: three transitions, none lost or
        // doubled.
        assert_eq!(w >> 2, 3);
        assert_eq!(transitions(&cb), 3);
    });
}

#[test]
fn loom_a_dropped_probe_never_strands_the_half_open_circuit() {
    model(|| {
        let cb = breaker(1, 1);
        cb.record_failure();
        let handle = Arc::new(Handle(cb.clone()));
        let first = Permit::acquire(&handle).expect("the first probe is admitted");
        let h2 = handle.clone();
        let dropper = thread::spawn(move || drop(first));
        let prober =
            thread::spawn(move || Permit::acquire(&h2).map(|p| p.settle(Verdict::Success)));
        dropper.join().unwrap();
        let probed = prober.join().unwrap().is_some();
        // Nothing is in flight now. Either the second probe closed the circuit,
        // or its slot is free again for the next caller.
        let state = CircuitState::from_bits(word(&cb));
        if probed {
            assert_eq!(state, CircuitState::Closed);
        } else {
            assert_eq!(state, CircuitState::HalfOpen);
            assert_eq!(
                admitted(&cb),
                0,
                "stuck: no slot free and nothing in flight"
            );
            assert!(cb.can_attempt());
        }
    });
}

// ===== the failure-rate window =====

const SECOND_NANOS: u64 = 1_000_000_000;

#[test]
fn loom_concurrent_records_lose_no_count() {
    model(|| {
        let window = Arc::new(Window::new(SECOND_NANOS));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let window = window.clone();
                thread::spawn(move || window.record(0, i == 0).fresh)
            })
            .collect();
        let main = window.record(0, false).fresh;
        let fresh: usize = threads
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum::<usize>()
            + usize::from(main);
        assert_eq!(
            window.counts(0),
            Counts {
                calls: 3,
                marked: 1
            }
        );
        assert_eq!(fresh, 1, "exactly one record started the stretch");
    });
}

#[test]
fn loom_a_late_record_never_wipes_a_newer_stretch() {
    model(|| {
        let window = Arc::new(Window::new(SECOND_NANOS));
        // Stretch 0 and stretch 10 share a bucket.
        let late = {
            let window = window.clone();
            thread::spawn(move || window.record(0, true))
        };
        window.record(SECOND_NANOS, false);
        late.join().unwrap();
        assert_eq!(
            window.counts(SECOND_NANOS),
            Counts {
                calls: 1,
                marked: 0
            }
        );
    });
}

fn rated(threshold: f64, minimum_calls: u32) -> CircuitBreaker {
    CircuitBreaker::builder(CircuitBreakerConfig {
        failure_threshold: 100,
        timeout: Duration::from_secs(3600),
        half_open_max_calls: 1,
    })
    .policy(TripPolicy::FailureRate {
        threshold,
        minimum_calls,
        window: Duration::from_secs(3600),
    })
    .open_backoff(OpenBackoff::Fixed)
    .build()
    .unwrap()
}

#[test]
fn loom_two_failures_reaching_the_rate_open_the_circuit_once() {
    model(|| {
        let cb = rated(1.0, 2);
        let tickets = [cb.admit().unwrap(), cb.admit().unwrap()];
        fail_on_threads(&cb, tickets);
        assert_eq!(CircuitState::from_bits(word(&cb)), CircuitState::Open);
        assert_eq!(transitions(&cb), 1);
    });
}

#[test]
fn loom_a_success_that_brings_the_minimum_opens_the_circuit_whatever_the_order() {
    model(|| {
        let cb = rated(0.5, 2);
        let failure = cb.admit().unwrap();
        let success = cb.admit().unwrap();
        let other = cb.clone();
        let t = thread::spawn(move || other.settle(failure, Verdict::Failure));
        cb.settle(success, Verdict::Success);
        t.join().unwrap();
        assert_eq!(
            CircuitState::from_bits(word(&cb)),
            CircuitState::Open,
            "one failure of two calls is 50%"
        );
        assert_eq!(transitions(&cb), 1);
    });
}
