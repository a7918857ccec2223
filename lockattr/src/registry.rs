//! The per-process registry: one slot per lock file, shared by every thread
//! and task of the process.
//!
//! flock(2) locks belong to an open file description, so two descriptors of
//! one process exclude each other, and one descriptor cannot tell its holders
//! apart. The slot therefore keeps one descriptor per file and counts the
//! holders itself: a holder that asks again re-enters, another holder of the
//! process finds the lock busy (or waits in the slot), exactly as another
//! process would. The descriptor stays open between holds: re-locking it and
//! checking the path costs less than opening the file again.

use crate::error::{Error, ErrorKind, Holder};
use crate::file::{self, Ctx, Identity, LockMode, Try};
use crate::holder::HolderId;
use crate::process;
use rustix::io::Errno;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Instant;

pub(crate) struct Slot {
    /// The process that made the slot. After fork(2) the child inherits the
    /// slot, its descriptor and its holders; they are the parent's, so the
    /// child never locks, unlocks or re-enters through them.
    pid: u32,
    path: PathBuf,
    /// Whether the descriptor stays open between holds. Only the first
    /// [`KEPT_OPEN`] slots of a process keep theirs, so a process that
    /// locks many distinct names does not run out of descriptors.
    keep_open: bool,
    state: Mutex<State>,
    /// Signalled when a hold ends or the kernel wait settles.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The descriptor, kept open between holds. `None` before the first
    /// hold, after the file was found replaced, and while the waiting thread
    /// has it.
    file: Option<(OwnedFd, Identity)>,
    /// The flock we hold on `file`, if any.
    kernel: Option<LockMode>,
    /// Holders in this process and how deeply each re-entered.
    holders: Vec<(HolderId, u32)>,
    /// The mode the current holders asked for.
    mode: Option<LockMode>,
    /// A thread is blocked in flock(2) on our descriptor (see `kernel_wait`).
    kernel_wait: bool,
    /// Why the last kernel wait failed, for the waiters it was for.
    kernel_failure: Option<(&'static str, Errno)>,
    /// How many callers are waiting in this slot.
    waiters: usize,
    /// Async waiters to wake when the slot changes.
    wakers: Vec<Waker>,
}

/// What one look at the slot found.
pub(crate) enum Step {
    Held,
    Wait,
}

impl Slot {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn inherited(&self) -> bool {
        self.pid != process::pid()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the state is
        // still consistent, so carry on rather than poison every later lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ctx<'a>(&'a self, label: &'a str) -> Ctx<'a> {
        Ctx {
            label,
            path: &self.path,
        }
    }

    /// Takes the lock for `holder` now, or reports it busy.
    pub(crate) fn try_now(
        self: &Arc<Self>,
        label: &'static str,
        mode: LockMode,
        holder: HolderId,
    ) -> Result<(), Error> {
        let mut st = self.state();
        self.step(&mut st, label, mode, holder, false).map(drop)
    }

    /// Blocks the calling thread until `holder` has the lock, or `deadline`
    /// passes (busy). `notice` runs once, with the holder, if the wait is
    /// still on at `notice_at`. The caller must be counted in with
    /// [`Slot::set_waiting`].
    pub(crate) fn wait_blocking(
        self: &Arc<Self>,
        label: &'static str,
        mode: LockMode,
        holder: HolderId,
        deadline: Option<Instant>,
        mut notice_at: Option<Instant>,
        notice: impl Fn(&Holder),
    ) -> Result<(), Error> {
        let mut st = self.state();
        loop {
            // Step and sleep under one mutex guard, so no wake-up is lost.
            if let Step::Held = self.step(&mut st, label, mode, holder, true)? {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(Error::busy(label, &self.path, st.holder(&self.path)));
            }
            if notice_at.is_some_and(|at| now >= at) {
                notice(&st.holder(&self.path));
                notice_at = None;
            }
            st = match [deadline, notice_at].into_iter().flatten().min() {
                Some(until) => {
                    let woken = self.changed.wait_timeout(st, until - now);
                    woken.unwrap_or_else(PoisonError::into_inner).0
                }
                None => self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// One poll of an async wait: takes the lock, or asks for `waker` to be
    /// woken when the slot changes. The caller must be counted in with
    /// [`Slot::set_waiting`].
    pub(crate) fn poll_wait(
        self: &Arc<Self>,
        label: &'static str,
        mode: LockMode,
        holder: HolderId,
        waker: &Waker,
    ) -> Result<Step, Error> {
        let mut st = self.state();
        let step = self.step(&mut st, label, mode, holder, true)?;
        if let Step::Wait = step
            && !st.wakers.iter().any(|w| w.will_wake(waker))
        {
            st.wakers.push(waker.clone());
        }
        Ok(step)
    }

    /// The busy error for a wait that ran out of time.
    pub(crate) fn busy(&self, label: &str) -> Error {
        let st = self.state();
        Error::busy(label, &self.path, st.holder(&self.path))
    }

    /// The holder to name while waiting.
    pub(crate) fn holder_now(&self) -> Holder {
        self.state().holder(&self.path)
    }

    /// Takes the lock for `holder` if it can be had now. Busy is an error
    /// when `may_wait` is false; otherwise the caller is told to wait, and a
    /// kernel wait is started if the kernel is what it waits for.
    fn step(
        self: &Arc<Self>,
        st: &mut State,
        label: &'static str,
        mode: LockMode,
        holder: HolderId,
        may_wait: bool,
    ) -> Result<Step, Error> {
        let ctx = self.ctx(label);
        let upgrading = st.mode == Some(LockMode::Shared) && mode == LockMode::Exclusive;
        if let Some(entry) = st.holders.iter_mut().find(|(id, _)| *id == holder) {
            if upgrading {
                return Err(upgrade(ctx));
            }
            entry.1 += 1;
            return Ok(Step::Held);
        }
        if !st.holders.is_empty() {
            if st.mode == Some(LockMode::Shared) && mode == LockMode::Shared {
                st.holders.push((holder, 1));
                return Ok(Step::Held);
            }
            if may_wait
                && st
                    .holders
                    .iter()
                    .any(|(id, _)| *id == HolderId::this_thread())
            {
                // This thread holds it in sync code and is now, beneath that
                // hold, waiting as another holder (an async fn driven by
                // `block_on`): the hold cannot end while we wait.
                return Err(self_deadlock(ctx));
            }
            return busy_or_wait(
                ctx,
                may_wait,
                Holder::ThisProcess {
                    pid: process::pid(),
                },
            );
        }
        if let Some((action, errno)) = st.kernel_failure.take() {
            return Err(Error::os(label, &self.path, action, errno, None));
        }
        if st.kernel_wait {
            return busy_or_wait(ctx, may_wait, holder_by_path(&self.path));
        }
        loop {
            if st.kernel.is_none() {
                let (fd, _) = st.open(ctx)?;
                let locked = file::flock(fd.as_fd(), mode, false);
                match locked.map_err(|errno| Error::os(label, &self.path, "lock", errno, None))? {
                    Try::Locked => st.kernel = Some(mode),
                    Try::Busy if may_wait => {
                        let file = st.file.take();
                        return self.start_kernel_wait(st, label, mode, file);
                    }
                    Try::Busy => return Err(Error::busy(label, &self.path, file::holder(fd))),
                }
            }
            // A waiting thread may have parked a stronger lock than we need.
            let compatible = st.kernel == Some(mode) || st.kernel == Some(LockMode::Exclusive);
            let identity = st.file.as_ref().map(|(_, identity)| *identity);
            match identity {
                Some(identity) if compatible && file::still_named(ctx, identity)? => {
                    st.mode = Some(mode);
                    st.holders.push((holder, 1));
                    return Ok(Step::Held);
                }
                // Deleted or replaced since we opened it (or a weaker lock
                // is parked): let go of this descriptor and start over.
                _ => {
                    st.kernel = None;
                    st.file = None;
                }
            }
        }
    }

    /// Ends one hold of `holder`; the last one unlocks the file.
    pub(crate) fn release(&self, holder: HolderId) {
        if self.inherited() {
            return; // a forked child never unlocks its parent's lock
        }
        let mut st = self.state();
        st.release(holder);
        if !self.keep_open && st.holders.is_empty() {
            st.file = None;
        }
        if st.waiters > 0 {
            st.notify(self);
        }
    }

    /// Counts a caller in (or out of) the waiters of this slot.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        let mut st = self.state();
        if waiting {
            st.waiters += 1;
        } else {
            st.waiters -= 1;
            st.unpark_if_unwanted();
        }
    }

    /// Why waiting needs a thread: flock(2) blocks in the kernel and only a
    /// signal could interrupt it, and lockattr sends none. So one thread per
    /// busy lock file blocks in `flock(LOCK_EX)` on the slot's own descriptor
    /// (no second open file), and every waiter of the process — sync threads
    /// on the condvar, async tasks by waker — waits in the slot, each with
    /// its own deadline. When the kernel grants the lock, the thread parks
    /// it in the slot and wakes them; the first compatible waiter takes it.
    /// If every waiter gave up meanwhile, the thread unlocks at once and
    /// ends: a timed-out or cancelled wait leaves at most this one thread and
    /// no descriptor behind, and only until the holder lets go.
    fn start_kernel_wait(
        self: &Arc<Self>,
        st: &mut State,
        label: &'static str,
        mode: LockMode,
        file: Option<(OwnedFd, Identity)>,
    ) -> Result<Step, Error> {
        let slot = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("lockattr-wait".into())
            .spawn(move || slot.kernel_wait(label, mode, file));
        match spawned {
            Ok(_) => {
                st.kernel_wait = true;
                Ok(Step::Wait)
            }
            Err(err) => {
                let text = format!("cannot start a thread to wait for the lock: {err}");
                Err(Error::other(ErrorKind::Io, label, &self.path, text))
            }
        }
    }

    fn kernel_wait(
        &self,
        label: &'static str,
        mode: LockMode,
        mut file: Option<(OwnedFd, Identity)>,
    ) {
        let ctx = self.ctx(label);
        loop {
            let Some((fd, identity)) = file.take() else {
                return;
            };
            let locked = file::flock(fd.as_fd(), mode, true);
            let mut st = self.state();
            match locked {
                Ok(Try::Locked) if matches!(file::still_named(ctx, identity), Ok(true)) => {
                    st.file = Some((fd, identity));
                    st.kernel = Some(mode);
                }
                Ok(Try::Locked) if st.waiters > 0 => {
                    // Replaced while we waited: close it (which unlocks it)
                    // and wait on the file the path names now.
                    drop(fd);
                    // If it cannot be opened, the waiters meet the error themselves.
                    if let Ok(new) = file::open(ctx) {
                        file = Some(new);
                        continue;
                    }
                }
                Ok(_) => drop(fd),
                Err(errno) => {
                    st.file = Some((fd, identity));
                    st.kernel_failure = Some(("lock", errno));
                }
            }
            st.kernel_wait = false;
            st.unpark_if_unwanted();
            st.notify(self);
            return;
        }
    }
}

impl State {
    fn open(&mut self, ctx: Ctx<'_>) -> Result<&(OwnedFd, Identity), Error> {
        if self.file.is_none() {
            self.file = Some(file::open(ctx)?);
        }
        Ok(self.file.as_ref().expect("just opened"))
    }

    fn release(&mut self, holder: HolderId) {
        let Some(i) = self.holders.iter().position(|(id, _)| *id == holder) else {
            return;
        };
        self.holders[i].1 -= 1;
        if self.holders[i].1 > 0 {
            return;
        }
        self.holders.swap_remove(i);
        if self.holders.is_empty() {
            self.mode = None;
            self.unlock();
        }
    }

    fn unlock(&mut self) {
        if let (Some(_), Some((fd, _))) = (self.kernel.take(), &self.file) {
            file::unlock(fd.as_fd());
        }
    }

    /// A lock the waiting thread parked for waiters who have all left.
    fn unpark_if_unwanted(&mut self) {
        if self.waiters == 0 && self.holders.is_empty() && !self.kernel_wait {
            self.unlock();
            self.kernel_failure = None;
        }
    }

    /// Who holds the lock, for messages.
    fn holder(&self, path: &Path) -> Holder {
        match (&self.holders[..], &self.file) {
            ([_, ..], _) => Holder::ThisProcess {
                pid: process::pid(),
            },
            (_, Some((fd, _))) => file::holder(fd),
            (_, None) => holder_by_path(path),
        }
    }

    fn notify(&mut self, slot: &Slot) {
        slot.changed.notify_all();
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }
}

/// The holder of the file at `path`, when our own descriptor is not at hand
/// (the waiting thread has it).
fn holder_by_path(path: &Path) -> Holder {
    match std::fs::File::open(path) {
        Ok(f) => file::holder(&f),
        Err(_) => Holder::Unknown,
    }
}

fn busy_or_wait(ctx: Ctx<'_>, may_wait: bool, holder: Holder) -> Result<Step, Error> {
    if may_wait {
        Ok(Step::Wait)
    } else {
        Err(Error::busy(ctx.label, ctx.path, holder))
    }
}

fn upgrade(ctx: Ctx<'_>) -> Error {
    let text = "an exclusive hold was asked for inside a shared hold of the same lock by the \
                same caller; upgrading could deadlock with another shared holder doing the \
                same, so it is refused: take the outer hold exclusive"
        .to_owned();
    Error::other(ErrorKind::WouldDeadlock, ctx.label, ctx.path, text)
}

fn self_deadlock(ctx: Ctx<'_>) -> Error {
    let text = "this thread already holds the lock in sync code and is now waiting for it as \
                another holder (an async fn driven by `block_on` inside the hold?); that wait \
                could never end, so it is refused"
        .to_owned();
    Error::other(ErrorKind::WouldDeadlock, ctx.label, ctx.path, text)
}

/// The registry proper: the slots of this process, by lock file path.
struct Registry {
    pid: u32,
    slots: HashMap<PathBuf, Arc<Slot>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// How many lock files a process keeps open between holds.
const KEPT_OPEN: usize = 64;

/// The slot for `path`, made on first use.
pub(crate) fn slot(path: &Path) -> Arc<Slot> {
    let pid = process::pid();
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let registry = match &mut *registry {
        Some(registry) if registry.pid == pid => registry,
        other => {
            if let Some(inherited) = other.take() {
                forget_inherited(inherited);
            }
            other.insert(Registry {
                pid,
                slots: HashMap::new(),
            })
        }
    };
    if let Some(slot) = registry.slots.get(path) {
        return Arc::clone(slot);
    }
    let slot = Arc::new(Slot {
        pid,
        path: path.to_owned(),
        keep_open: registry.slots.len() < KEPT_OPEN,
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    registry.slots.insert(path.to_owned(), Arc::clone(&slot));
    slot
}

/// In a forked child: the parent's slots are not ours. Close the descriptors
/// we can (closing never unlocks while the parent keeps its own), and leave
/// the rest to the guards that still point at them.
fn forget_inherited(registry: Registry) {
    for slot in registry.slots.into_values() {
        // try_lock: a parent thread may have held the mutex at fork time.
        if let Ok(mut st) = slot.state.try_lock() {
            st.file = None;
            st.kernel = None;
        }
    }
}
