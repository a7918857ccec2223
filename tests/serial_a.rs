//! Tests never pass without running: `#[test]` functions of two test
//! binaries (this one and `serial_b`) take one lock without `wait`, and run
//! one after the other instead of the second passing without running its
//! body. The functions below are the tests; the driver at the end runs them
//! in pairs, one from each binary, in two processes at once.
//!
//! Each attribute order is covered: `#[test]` below `#[exclusive]` (the
//! macro sees it and waits), `#[test]` above it (expanded first, it leaves
//! no trace: the runtime recognises the test by its thread's name), and
//! `#[tokio::test]` in both orders.

mod common;
mod serial;

use lockattr::exclusive;
use std::path::PathBuf;

#[test]
#[ignore = "run by the driver, in a process of its own"]
#[exclusive("serial-db")]
fn test_above() {
    serial::body("serial_a::test_above");
}

#[exclusive("serial-db")]
#[test]
#[ignore = "run by the driver, in a process of its own"]
fn test_below() {
    serial::body("serial_a::test_below");
}

#[tokio::test]
#[ignore = "run by the driver, in a process of its own"]
#[exclusive("serial-db")]
async fn tokio_above() {
    tokio::task::yield_now().await;
    serial::body("serial_a::tokio_above");
}

#[exclusive("serial-db")]
#[tokio::test]
#[ignore = "run by the driver, in a process of its own"]
async fn tokio_below() {
    tokio::task::yield_now().await;
    serial::body("serial_a::tokio_below");
}

/// Every test above and in `serial_b` waits its turn while a test of the
/// other binary holds the lock. When a test of this binary waits, both run
/// with `--test-threads=1` (libtest still runs the test on a thread named
/// after it); when one of `serial_b` waits, with libtest's default.
#[test]
fn tests_in_two_binaries_take_turns() {
    let sources = [
        "tests/serial_b.rs",
        "tests/serial/mod.rs",
        "tests/common/mod.rs",
    ];
    let other = match serial::sibling("serial_b", &sources) {
        Ok(other) => other,
        Err(why) => {
            serial::skip(&format!(
                "SKIPPED tests_in_two_binaries_take_turns: {why}; \
                 run `cargo test --test serial_a --test serial_b`"
            ));
            return;
        }
    };
    let me = std::env::current_exe().expect("this test binary's path");
    let a = |name| serial::Test::new(&me, "serial_a", name);
    let dirs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (i, form) in ["test_above", "test_below", "tokio_above", "tokio_below"]
        .into_iter()
        .enumerate()
    {
        let nested = format!("nested::{form}");
        let b = serial::Test::new(&other, "serial_b", &nested);
        let dir = |n: usize| dirs.join(format!("serial-{}-{}", std::process::id(), 2 * i + n));
        serial::take_turns(&dir(0), b, a(form), true);
        serial::take_turns(&dir(1), a(form), b, false);
    }
}
