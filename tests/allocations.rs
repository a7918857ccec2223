//! Uncontended calls allocate nothing after the first (issue 4): not the
//! plain attribute, not `wait`, not a nested call, not a name made from the
//! arguments (issue 9), not a hand-written `Lock::acquire`. The wait's
//! notice alarm is only set up when a wait really has to wait.

mod common; // the run's own lock directory

use lockattr::exclusive;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the test's thread counts: libtest's main thread does its own
    // bookkeeping (allocating) while the test runs, later on a busy machine.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[exclusive("allocations-plain")]
fn plain() -> Result<u32, lockattr::Error> {
    Ok(1)
}

#[exclusive("allocations-wait", wait)]
fn waiting() -> Result<u32, lockattr::Error> {
    plain() // nested in another lock's hold: no allocation either
}

#[exclusive("allocations-wait-for", wait = "5s")]
fn waiting_for() -> Result<u32, lockattr::Error> {
    Ok(1)
}

/// A name made from an argument: built on the stack, looked up by a
/// borrowed path.
#[exclusive("allocations-{env}-{n}")]
fn templated(env: &str, n: u32) -> Result<u32, lockattr::Error> {
    Ok(n)
}

#[test]
fn uncontended_calls_allocate_nothing_after_the_first() {
    COUNTED.with(|counted| counted.set(true));
    let by_hand = lockattr::Lock::new(lockattr::LockName::new("allocations-by-hand"));
    let calls = || {
        let guard = by_hand.acquire().unwrap();
        drop(guard);
        plain().unwrap()
            + waiting().unwrap()
            + waiting_for().unwrap()
            + templated("prod", 0).unwrap()
    };
    for _ in 0..3 {
        calls(); // first calls: slots, paths, holder vectors
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        assert_eq!(calls(), 3);
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(
        allocated, 0,
        "{allocated} allocations in 1000 rounds of uncontended calls"
    );
}
