//! What the attribute's expansion calls, and [`TestDir`] for lockattr's
//! own tests and doc examples. Not a stable API: it changes with
//! `lockattr-macros`, which is pinned to this exact version.
#![allow(missing_docs)]

mod names;
mod test_dir;
mod test_name;

pub use names::{
    ByBytes, ByDisplay, Name, Part, Slots, Value, enter_names, enter_slots_async, resolve,
};
pub use test_dir::{TestDir, doc_dir};
pub use test_name::TestName;

pub use crate::Hold;
use crate::holder::{HolderId, Scoped};
pub use crate::outcome::{
    Check, Fail, FailAsErr, FailAsPanic, NotAFuture, Outcome, ReturnsFuture, ReturnsValue, fail,
    not_a_future,
};
use crate::place::Place;
use crate::registry::Slot;
use crate::{Error, Lock};
use std::future::Future;
use std::sync::OnceLock;

/// One call site's memory of its lock's slot, so that later calls skip
/// resolving the path and looking it up. The place is remembered too:
/// in a generic function one call site can name a different lock per
/// type (`#[exclusive(T::NAME)]`), and then only the first is cached.
/// Only a slot that passed `Lock::slot`'s checks is cached, and what
/// they read is fixed for the process.
pub struct Site {
    cached: OnceLock<(Place, &'static Slot)>,
}

impl Site {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Site {
        Site {
            cached: OnceLock::new(),
        }
    }

    fn slot(&self, lock: &Lock) -> Result<&'static Slot, Error> {
        match self.cached.get() {
            // After fork() the remembered slot is the parent's.
            Some(&(place, slot)) if place == lock.place && !slot.inherited() => Ok(slot),
            _ => {
                let slot = lock.slot()?;
                let _ = self.cached.set((lock.place, slot));
                Ok(slot)
            }
        }
    }
}

/// The lock for a sync function, taken as the current thread (or task).
/// If `test` is this thread's test and the lock is busy, waits for it
/// instead: a test must not pass without running.
pub fn enter(
    site: &'static Site,
    lock: &'static Lock,
    test: Option<&'static TestName>,
) -> Result<Hold, Error> {
    let slot = site.slot(lock)?;
    let holder = HolderId::current();
    match lock.take(slot, holder) {
        Err(err) if err.is_busy() && test.is_some_and(TestName::is_running) => {
            lock.wait().take(slot, holder)
        }
        taken => taken,
    }
}

/// Calls `on_busy = |err| ...` with the busy error. The closure is written
/// in the attribute; this bound gives its argument the type `Error`.
#[inline]
pub fn on_busy<R>(err: Error, f: impl FnOnce(Error) -> R) -> R {
    f(err)
}

/// A lock name given by a path (`#[exclusive(BUILD_DEPLOY)]`) must be a
/// [`LockName`](crate::LockName), so that its rules were checked when the
/// constant was evaluated. Implemented for `LockName` alone: the expansion
/// passes the path through [`const_name`], so that a `const` of another type
/// gets this message at the user's path, and no second "mismatched types"
/// pointing into lockattr (the return type cannot be worked out then).
#[diagnostic::on_unimplemented(
    message = "a lock name given by a path must be a `lockattr::LockName`, not `{Self}`",
    label = "declare this constant with `lockattr::LockName::new`",
    note = "declare it as `const BUILD_DEPLOY: lockattr::LockName = lockattr::LockName::new(\"build-deploy\");`, which checks the name at compile time",
    note = "or write the name itself in quotes, as in `#[exclusive(\"build-deploy\")]`"
)]
pub trait ConstName {
    type Name;
}

#[diagnostic::do_not_recommend]
impl ConstName for crate::LockName {
    type Name = crate::LockName;
}

pub const fn const_name<N: ConstName<Name = N>>(name: N) -> N::Name {
    name
}

/// The lock for an async function, taken as its task; waiting never
/// blocks the executor.
pub async fn enter_async(site: &'static Site, lock: &'static Lock) -> Result<Hold, Error> {
    let holder = HolderId::for_task();
    lock.take_async(site.slot(lock)?, holder).await
}

/// Runs an async body as the task that holds `hold`.
pub fn scoped<F: Future>(hold: &Hold, body: F) -> impl Future<Output = F::Output> {
    Scoped::new(hold.holder, body)
}
