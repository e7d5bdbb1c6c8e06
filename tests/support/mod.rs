//! What the integration tests share: the fixtures of the `test-support` crate
//! (log capture, loopback servers, call helpers), under one name.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub use test_support::capture::{self, Capture, Captured, transitions};
pub use test_support::server::{self, Loopback, Reply, Seen, Server, TestBody, bind, http1};
pub use test_support::{call, call_err, call_ok, hyper_client};

/// Prints this crate's logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    capture::init();
}

/// A capture of the current test's logs; `install` it on the test's thread.
pub fn capture_logs() -> Capture {
    Capture::new()
}

/// Checks log output written at `WARN` (a `fmt` subscriber, no colours): it
/// holds a line with each of `expected`, every `WARN` line names its call's
/// `request_id` and `provider`, and nothing below `WARN` came through.
pub fn assert_warn_lines_name_their_call(text: &str, provider: &str, expected: &[&str]) {
    let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    for wanted in expected {
        assert!(
            warns.iter().any(|l| l.contains(wanted)),
            "no {wanted:?} in:\n{text}"
        );
    }
    let provider = format!("provider=\"{provider}\"");
    for line in &warns {
        assert!(
            line.contains("request_id="),
            "no request ID on: {line}\n{text}"
        );
        assert!(line.contains(&provider), "no provider on: {line}\n{text}");
    }
    assert!(!text.contains(" INFO "), "{text}");
}
