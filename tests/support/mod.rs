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
