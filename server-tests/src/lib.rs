//! Tests of stache-resilience against real server software (nginx from
//! Debian's `nginx-light`, redis-server from `redis-server`), in `tests/`. Kept out of the crate's own
//! `cargo test --all-features`, which needs nothing but Rust: run them with
//! `cargo test -p server-tests`. A test whose server is not installed fails
//! with the package to install (as root, it installs it with `apt-get`).
