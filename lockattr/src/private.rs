//! What the attribute's expansion calls. Not a stable API: it changes with
//! `lockattr-macros`, which is pinned to this exact version.
#![allow(missing_docs)]

pub use crate::Hold;
use crate::holder::{HolderId, Scoped};
pub use crate::outcome::{
    Check, Fail, FailAsErr, FailAsPanic, NotAFuture, Outcome, ReturnsFuture, ReturnsValue, fail,
    not_a_future,
};
use crate::place::Place;
use crate::registry::Slot;
use crate::wait::{AcquireAsync, Wait};
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
pub fn enter(site: &'static Site, lock: &'static Lock) -> Result<Hold, Error> {
    lock.take(site.slot(lock)?, HolderId::current())
}

/// The lock for an async function, taken as its task; waiting never
/// blocks the executor.
pub async fn enter_async(site: &'static Site, lock: &'static Lock) -> Result<Hold, Error> {
    let holder = HolderId::for_task();
    let slot = site.slot(lock)?;
    let limit = match lock.wait {
        Wait::No => None,
        Wait::Forever => None,
        Wait::For(limit) => Some(limit),
    };
    if lock.wait == Wait::No {
        slot.try_now(lock.mode, holder)?;
    } else {
        AcquireAsync::new(slot, lock.mode, limit, holder).await?;
    }
    Ok(Hold { slot, holder })
}

/// Runs an async body as the task that holds `hold`.
pub fn scoped<F: Future>(hold: &Hold, body: F) -> impl Future<Output = F::Output> {
    Scoped::new(hold.holder, body)
}
