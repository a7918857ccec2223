//! `#[exclusive]` in an edition-2021 crate. In this edition the temporaries
//! of a block's tail expression are dropped after the block's locals, and
//! the lock's guard is such a local: a `Drop` in the tail of the body (a
//! `MutexGuard`, a writer) would run after the lock is let go, unless the
//! body sits in a block of the macro's own, whose span carries the macro
//! crate's edition (2024), where the tail's temporaries drop first.

mod common;

use common::{busy_elsewhere, OwnDir};
use lockattr::exclusive;
use std::sync::atomic::{AtomicU8, Ordering};

const NOT_DROPPED: u8 = 0;
const HELD: u8 = 1;
const FREE: u8 = 2;

/// A temporary of the tail expression: its `Drop` records whether the
/// lock was still held at that moment.
struct Probe {
    lock: &'static str,
    seen: &'static AtomicU8,
}

impl Probe {
    fn value(&self) -> u32 {
        7
    }

    fn touch(&self) {}
}

impl Drop for Probe {
    fn drop(&mut self) {
        let seen = if busy_elsewhere(self.lock) {
            HELD
        } else {
            FREE
        };
        self.seen.store(seen, Ordering::SeqCst);
    }
}

fn assert_held(seen: &AtomicU8, what: &str) {
    match seen.load(Ordering::SeqCst) {
        HELD => {}
        FREE => panic!("{what}: the tail temporary was dropped after the lock was let go"),
        _ => panic!("{what}: the tail temporary was never dropped"),
    }
}

static SYNC_VALUE: AtomicU8 = AtomicU8::new(NOT_DROPPED);

#[exclusive("e2021-tail-value", on_busy = 0)]
fn tail_value() -> u32 {
    Probe {
        lock: "e2021-tail-value",
        seen: &SYNC_VALUE,
    }
    .value()
}

static SYNC_UNIT: AtomicU8 = AtomicU8::new(NOT_DROPPED);

#[exclusive("e2021-tail-unit")]
fn tail_unit() {
    Probe {
        lock: "e2021-tail-unit",
        seen: &SYNC_UNIT,
    }
    .touch()
}

static ASYNC_VALUE: AtomicU8 = AtomicU8::new(NOT_DROPPED);

#[exclusive("e2021-tail-async", on_busy = 0)]
async fn tail_value_async() -> u32 {
    tokio::task::yield_now().await;
    Probe {
        lock: "e2021-tail-async",
        seen: &ASYNC_VALUE,
    }
    .value()
}

#[test]
fn tail_temporaries_drop_inside_the_lock() {
    let _dir = OwnDir::new();
    assert_eq!(tail_value(), 7);
    assert_held(&SYNC_VALUE, "fn -> u32");
    tail_unit();
    assert_held(&SYNC_UNIT, "fn -> ()");

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    assert_eq!(rt.block_on(tail_value_async()), 7);
    assert_held(&ASYNC_VALUE, "async fn -> u32");
}
