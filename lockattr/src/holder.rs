//! Who is asking for a lock inside this process: a thread, or an async task.
//!
//! Sync code holds as its thread. An `#[exclusive]` async fn holds as its
//! task: the outermost such future picks an id, and every poll of its body
//! runs with that id as the thread's *current task* (as tracing's
//! `Instrumented` enters its span on every poll). A nested `#[exclusive]`
//! call polled inside — an inner async fn, a sync fn, a branch of a `join!`
//! — sees that id and re-enters; a spawned task is polled by the executor
//! outside of it and is another holder. Two tasks polled on one thread have
//! different ids, so they exclude each other.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Who holds a lock inside this process. Never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HolderId(u64);

static NEXT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD: Cell<u64> = const { Cell::new(0) };
    static TASK: Cell<u64> = const { Cell::new(0) };
}

impl HolderId {
    pub(crate) fn fresh() -> HolderId {
        HolderId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The holder sync code acts as: the task being polled, else the thread.
    pub(crate) fn current() -> HolderId {
        let task = TASK.get();
        if task != 0 {
            return HolderId(task);
        }
        HolderId::this_thread()
    }

    /// This thread's own id, made on first use.
    pub(crate) fn this_thread() -> HolderId {
        let mut id = THREAD.get();
        if id == 0 {
            id = HolderId::fresh().0;
            THREAD.set(id);
        }
        HolderId(id)
    }

    /// The holder an async fn acts as: the enclosing `#[exclusive]` task if
    /// it is polled inside one, else a new task. Never the thread: an
    /// executor thread polls many unrelated tasks.
    pub(crate) fn for_task() -> HolderId {
        match TASK.get() {
            0 => HolderId::fresh(),
            task => HolderId(task),
        }
    }
}

/// Runs `f` with `holder` as this thread's current task, restoring the
/// previous one after, also when `f` panics.
pub(crate) fn acting_as<R>(holder: HolderId, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(TASK.replace(holder.0));
    f()
}

/// Puts the previous current task back.
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        TASK.set(self.0);
    }
}

/// Polls `fut` with `holder` as the current task, restoring the previous one
/// after every poll, also when the poll panics.
pub(crate) struct Scoped<F> {
    holder: HolderId,
    fut: F,
}

impl<F> Scoped<F> {
    pub(crate) fn new(holder: HolderId, fut: F) -> Scoped<F> {
        Scoped { holder, fut }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let holder = self.holder;
        // SAFETY: `fut` is structurally pinned: it is never moved out of
        // `self`, and `Scoped` has no `Drop` impl and is not `Unpin` unless
        // `F` is.
        let fut = unsafe { self.map_unchecked_mut(|scoped| &mut scoped.fut) };
        let _restore = Restore(TASK.replace(holder.0));
        fut.poll(cx)
    }
}
