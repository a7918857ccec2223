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

use crate::error::{About, Error, ErrorKind, Holder};
use crate::file::{self, Ctx, Identity, LockMode, Try};
use crate::holder::HolderId;
use crate::process;
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Instant;

/// One lock file of this process. Slots live as long as the process (a
/// path and a few words per distinct lock file), so holds and call sites
/// refer to them without counting references.
pub(crate) struct Slot {
    /// The process that made the slot. After fork(2) the child inherits the
    /// slot, its descriptor and its holders; they are the parent's, so the
    /// child never locks, unlocks or re-enters through them.
    pid: u32,
    /// The lock's name, for messages; `None` for a lock given by its path.
    name: Option<Box<str>>,
    path: PathBuf,
    c_path: CString,
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
    /// hold, after the file was found replaced, and while a thread blocks
    /// in flock(2) with it.
    file: Option<(OwnedFd, Identity)>,
    /// The flock we hold on `file`, if any.
    kernel: Option<LockMode>,
    /// Holders in this process and how deeply each re-entered.
    holders: Vec<(HolderId, u32)>,
    /// The mode the current holders asked for.
    mode: Option<LockMode>,
    /// A thread is blocked in flock(2) on our descriptor (see `kernel_wait`);
    /// the file it waits on, for naming its holder.
    kernel_wait: Option<Identity>,
    /// Why the last kernel wait failed, for the waiters it was for.
    kernel_failure: Option<(&'static str, Errno)>,
    /// How many callers are waiting in this slot.
    waiters: usize,
    /// How many of them sleep on the condvar (a wake-up is a system call).
    sleepers: usize,
    /// Async waiters to wake when the slot changes.
    wakers: Vec<Waker>,
}

/// What a caller does when the kernel says busy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnBusy {
    /// Report busy.
    Fail,
    /// Wait in the slot; a helper thread blocks in the kernel.
    Wait,
    /// Block in the kernel on this very thread (a sync wait without a
    /// deadline: the cheapest hand-off, one wake-up).
    Block,
}

/// What one look at the slot found.
pub(crate) enum Step {
    Held,
    Wait,
    /// Block in flock(2) on this descriptor, then look again.
    Block((OwnedFd, Identity)),
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

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            name: self.name(),
            path: &self.path,
            c_path: &self.c_path,
        }
    }

    fn about(&self) -> About<'_> {
        self.ctx().about()
    }

    /// Takes the lock for `holder` now, or reports it busy.
    pub(crate) fn try_now(&'static self, mode: LockMode, holder: HolderId) -> Result<(), Error> {
        let mut st = self.state();
        match self.step(&mut st, mode, holder, OnBusy::Fail) {
            Ok(_) => Ok(()),
            Err(err) => {
                drop(st);
                Err(self.name_holder(err))
            }
        }
    }

    /// Blocks the calling thread until `holder` has the lock, or `deadline`
    /// passes (busy). `arm` runs before each actual wait (the first time is
    /// what counts). The caller must be counted in with
    /// [`Slot::set_waiting`].
    pub(crate) fn wait_blocking(
        &'static self,
        mode: LockMode,
        holder: HolderId,
        deadline: Option<Instant>,
        arm: &mut dyn FnMut(),
    ) -> Result<(), Error> {
        let on_busy = if deadline.is_some() {
            OnBusy::Wait
        } else {
            OnBusy::Block
        };
        let mut st = self.state();
        loop {
            // Step and sleep under one mutex guard, so no wake-up is lost.
            match self.step(&mut st, mode, holder, on_busy)? {
                Step::Held => return Ok(()),
                Step::Block(file) => {
                    drop(st);
                    arm();
                    self.kernel_wait(mode, file);
                    st = self.state();
                    continue;
                }
                Step::Wait => {}
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                drop(st);
                return Err(self.busy());
            }
            arm(); // the timer never takes the slot's mutex while it holds its own
            st.sleepers += 1;
            st = match deadline {
                Some(deadline) => {
                    let woken = self.changed.wait_timeout(st, deadline - now);
                    woken.unwrap_or_else(PoisonError::into_inner).0
                }
                None => self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            st.sleepers -= 1;
        }
    }

    /// One poll of an async wait: takes the lock, or asks for `waker` to be
    /// woken when the slot changes. The caller must be counted in with
    /// [`Slot::set_waiting`].
    pub(crate) fn poll_wait(
        &'static self,
        mode: LockMode,
        holder: HolderId,
        waker: &Waker,
    ) -> Result<Step, Error> {
        let mut st = self.state();
        let step = self.step(&mut st, mode, holder, OnBusy::Wait)?;
        if let Step::Wait = step
            && !st.wakers.iter().any(|w| w.will_wake(waker))
        {
            st.wakers.push(waker.clone());
        }
        Ok(step)
    }

    /// The busy error for a wait that ran out of time.
    pub(crate) fn busy(&self) -> Error {
        Error::busy(self.about(), self.holder_now())
    }

    /// Who holds the lock, for messages. Reading `/proc/locks` can take
    /// milliseconds, so never under the slot's mutex.
    pub(crate) fn holder_now(&self) -> Holder {
        let (in_process, identity) = {
            let st = self.state();
            // While a thread waits in flock(2), the file it waits on: after
            // a replacement the path names another one.
            let open = st.file.as_ref().map(|(_, identity)| *identity);
            (!st.holders.is_empty(), st.kernel_wait.or(open))
        };
        if in_process {
            return Holder::ThisProcess {
                pid: process::pid(),
            };
        }
        match identity.or_else(|| file::identity_of(&self.c_path).map(|(identity, _)| identity)) {
            Some(identity) => file::holder(identity),
            None => Holder::Unknown,
        }
    }

    /// A busy error from `step` names no holder yet: look it up now, out of
    /// the mutex.
    fn name_holder(&self, err: Error) -> Error {
        if err.holder() == Some(&Holder::Unknown) {
            self.busy()
        } else {
            err
        }
    }

    /// Takes the lock for `holder` if it can be had now; otherwise does
    /// what `on_busy` says. A busy error names the holder only when it is
    /// in this process (see `name_holder`).
    fn step(
        &'static self,
        st: &mut State,
        mode: LockMode,
        holder: HolderId,
        on_busy: OnBusy,
    ) -> Result<Step, Error> {
        let ctx = self.ctx();
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
            let this_thread = HolderId::this_thread();
            if on_busy != OnBusy::Fail && st.holders.iter().any(|(id, _)| *id == this_thread) {
                // This thread holds it in sync code and is now, beneath that
                // hold, waiting as another holder (an async fn driven by
                // `block_on`): the hold cannot end while we wait.
                return Err(self_deadlock(ctx));
            }
            let pid = process::pid();
            return busy_or_wait(ctx, on_busy, Holder::ThisProcess { pid });
        }
        if let Some((action, errno)) = st.kernel_failure.take() {
            return Err(ctx.os(action, errno, None));
        }
        if st.kernel_wait.is_some() {
            return busy_or_wait(ctx, on_busy, Holder::Unknown);
        }
        loop {
            if st.kernel.is_none() {
                let (fd, _) = st.open(ctx)?;
                let locked = file::flock(fd.as_fd(), mode, false);
                match locked.map_err(|errno| ctx.os("lock", errno, None))? {
                    Try::Locked => st.kernel = Some(mode),
                    Try::Busy => {
                        return match on_busy {
                            OnBusy::Fail => Err(Error::busy(ctx.about(), Holder::Unknown)),
                            OnBusy::Wait => self.start_kernel_wait(st, mode),
                            OnBusy::Block => {
                                let file = st.file.take().expect("opened above");
                                st.kernel_wait = Some(file.1);
                                Ok(Step::Block(file))
                            }
                        };
                    }
                }
            }
            // A waiting thread may have parked a stronger lock than we need.
            let compatible = st.kernel == Some(mode) || st.kernel == Some(LockMode::Exclusive);
            let identity = st.file.as_ref().map(|(_, identity)| *identity);
            let named = match identity {
                Some(identity) if compatible => file::still_named(ctx, identity),
                _ => Ok(false),
            };
            match named {
                Ok(true) => {
                    st.mode = Some(mode);
                    st.holders.push((holder, 1));
                    return Ok(Step::Held);
                }
                // Deleted or replaced since we opened it (or a weaker lock
                // is parked): let go of this descriptor and start over.
                Ok(false) => st.forget_file(),
                // Cannot tell (the directory became unsearchable...): let go
                // before saying so, or every other process would find the
                // lock busy until we happened to call again.
                Err(err) => {
                    st.forget_file();
                    return Err(err);
                }
            }
        }
    }

    /// Ends one hold of `holder`; the last one unlocks the file, after
    /// checking that the path still names it.
    pub(crate) fn release(&self, holder: HolderId) {
        if self.inherited() {
            return; // a forked child never unlocks its parent's lock
        }
        let mut st = self.state();
        if st.release(holder) {
            let lost = st
                .file
                .as_ref()
                .and_then(|(fd, identity)| file::lost(fd.as_fd(), &self.c_path, *identity));
            if let Some(lost) = lost {
                // Our descriptor locks an orphan: the next hold opens what
                // the path names now.
                st.forget_file();
                crate::report::lost_file(self.name(), &self.path, lost);
            }
            st.unlock();
        }
        if !self.keep_open && st.holders.is_empty() {
            st.file = None;
        }
        if st.waiters > 0 {
            self.notify(st);
        }
    }

    /// Closes the descriptor kept between holds, unless the lock is held
    /// or waited for.
    fn close_if_idle(&self) {
        if self.inherited() {
            return;
        }
        let mut st = self.state();
        if st.holders.is_empty() && st.waiters == 0 && st.kernel_wait.is_none() {
            st.forget_file();
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

    /// Why waiting may need a thread: flock(2) blocks in the kernel and only
    /// a signal could interrupt it, and lockattr sends none. A sync wait
    /// without a deadline simply blocks in flock(2) itself. Every other
    /// wait (with a deadline, or async) waits in the slot — threads on the
    /// condvar, tasks by waker — while one thread per busy lock file blocks
    /// in flock(2) on the slot's own descriptor (no second open file). When
    /// the kernel grants the lock, that thread parks it in the slot and
    /// wakes the waiters; the first compatible one takes it. If every waiter
    /// gave up meanwhile, the thread unlocks at once and ends: a timed-out
    /// or cancelled wait leaves at most this one thread and no descriptor
    /// behind, and only until the holder lets go.
    fn start_kernel_wait(&'static self, st: &mut State, mode: LockMode) -> Result<Step, Error> {
        let file = st.file.take().expect("opened before locking");
        let identity = file.1;
        let spawned = std::thread::Builder::new()
            .name("lockattr-wait".into())
            .spawn(move || self.kernel_wait(mode, file));
        match spawned {
            Ok(_) => {
                st.kernel_wait = Some(identity);
                Ok(Step::Wait)
            }
            Err(err) => {
                let text = format!("cannot start a thread to wait for the lock: {err}");
                Err(Error::other(ErrorKind::Io, self.about(), text))
            }
        }
    }

    /// Blocks in flock(2), then parks what the kernel granted in the slot.
    /// Whoever takes it checks that the path still names the file.
    fn kernel_wait(&self, mode: LockMode, file: (OwnedFd, Identity)) {
        let locked = file::flock(file.0.as_fd(), mode, true);
        let mut st = self.state();
        st.file = Some(file);
        match locked {
            Ok(Try::Locked) => st.kernel = Some(mode),
            Ok(Try::Busy) => {} // not from a blocking flock; the waiters try again
            Err(errno) => st.kernel_failure = Some(("lock", errno)),
        }
        st.kernel_wait = None;
        st.unpark_if_unwanted();
        self.notify(st);
    }

    /// Wakes every waiter, after letting go of the mutex they will take.
    fn notify(&self, mut st: MutexGuard<'_, State>) {
        let wakers = std::mem::take(&mut st.wakers);
        let sleepers = st.sleepers > 0;
        drop(st);
        if sleepers {
            self.changed.notify_all();
        }
        for waker in wakers {
            waker.wake();
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

    /// Ends one hold of `holder`; true when that was the last hold in the
    /// process, so the caller must unlock.
    fn release(&mut self, holder: HolderId) -> bool {
        let Some(i) = self.holders.iter().position(|(id, _)| *id == holder) else {
            return false;
        };
        self.holders[i].1 -= 1;
        if self.holders[i].1 > 0 {
            return false;
        }
        self.holders.swap_remove(i);
        if self.holders.is_empty() {
            self.mode = None;
            return true;
        }
        false
    }

    /// Lets go of the descriptor; closing it drops any flock on it.
    fn forget_file(&mut self) {
        self.kernel = None;
        self.file = None;
    }

    fn unlock(&mut self) {
        if let (Some(_), Some((fd, _))) = (self.kernel.take(), &self.file) {
            file::unlock(fd.as_fd());
        }
    }

    /// A lock the waiting thread parked for waiters who have all left.
    fn unpark_if_unwanted(&mut self) {
        if self.waiters == 0 && self.holders.is_empty() && self.kernel_wait.is_none() {
            self.unlock();
            self.kernel_failure = None;
        }
    }
}

fn busy_or_wait(ctx: Ctx<'_>, on_busy: OnBusy, holder: Holder) -> Result<Step, Error> {
    match on_busy {
        OnBusy::Fail => Err(Error::busy(ctx.about(), holder)),
        OnBusy::Wait | OnBusy::Block => Ok(Step::Wait),
    }
}

fn upgrade(ctx: Ctx<'_>) -> Error {
    let text = "an exclusive hold was asked for inside a shared hold of the same lock by the \
                same caller; upgrading could deadlock with another shared holder doing the \
                same, so it is refused: take the outer hold exclusive"
        .to_owned();
    Error::other(ErrorKind::WouldDeadlock, ctx.about(), text)
}

fn self_deadlock(ctx: Ctx<'_>) -> Error {
    let text = "this thread already holds the lock in sync code and is now waiting for it as \
                another holder (an async fn driven by `block_on` inside the hold?); that wait \
                could never end, so it is refused"
        .to_owned();
    Error::other(ErrorKind::WouldDeadlock, ctx.about(), text)
}

/// The registry proper: the slots of this process. The hasher has fixed
/// keys: the paths are our own, and a random seed would cost a getrandom(2)
/// on the first lock.
struct Registry {
    pid: u32,
    /// By the path as the lock spelled it.
    by_path: HashMap<PathBuf, &'static Slot, BuildHasherDefault<DefaultHasher>>,
    /// By directory and file name: two spellings of one file (a symlinked
    /// directory; `/var/run/lock` beside `/run/lock`) must be one lock in
    /// this process, or a nested call would find itself busy.
    by_file: HashMap<(Identity, OsString), &'static Slot, BuildHasherDefault<DefaultHasher>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// How many lock files a process keeps open between holds.
const KEPT_OPEN: usize = 64;

/// The slot for the lock file `path` (named `name`, or given by its path),
/// made on first use. A new spelling of a known file is looked up by its
/// directory's identity, once; the answer stays for the process.
pub(crate) fn slot(name: Option<&str>, path: &Path) -> &'static Slot {
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
                by_path: HashMap::default(),
                by_file: HashMap::default(),
            })
        }
    };
    if let Some(slot) = registry.by_path.get(path) {
        return slot;
    }
    let file_key = file_key(path);
    if let Some(slot) = file_key.as_ref().and_then(|key| registry.by_file.get(key)) {
        registry.by_path.insert(path.to_owned(), slot);
        return slot;
    }
    let slot: &'static Slot = Box::leak(Box::new(Slot {
        pid,
        name: name.map(Box::from),
        path: path.to_owned(),
        // A path from `Place::resolve` has no NUL: names and the macro's
        // options refuse it, and so does `Lock::dir` at resolve time.
        c_path: CString::new(path.as_os_str().as_bytes()).unwrap_or_default(),
        keep_open: registry.by_path.len() < KEPT_OPEN,
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    }));
    registry.by_path.insert(path.to_owned(), slot);
    if let Some(key) = file_key {
        registry.by_file.insert(key, slot);
    }
    slot
}

/// The lock file's directory (by device and inode) and file name; `None`
/// when the directory cannot be looked at (the open will say why).
fn file_key(path: &Path) -> Option<(Identity, OsString)> {
    let dir = path.parent()?;
    let name = path.file_name()?;
    let dir = file::identity_of_dir(dir)?;
    Some((dir, name.to_owned()))
}

/// Closes the descriptors this process keeps between holds of the locks it
/// does not hold or wait for now.
pub(crate) fn close_idle() {
    let slots: Vec<&'static Slot> = {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        match &*registry {
            Some(registry) if registry.pid == process::pid() => {
                registry.by_path.values().copied().collect()
            }
            _ => return,
        }
    };
    for slot in slots {
        slot.close_if_idle();
    }
}

/// In a forked child: the parent's slots are not ours. Close the descriptors
/// we can (closing never unlocks while the parent keeps its own), and leave
/// the rest to the guards that still point at them.
fn forget_inherited(registry: Registry) {
    for slot in registry.by_path.into_values() {
        // try_lock: a parent thread may have held the mutex at fork time.
        if let Ok(mut st) = slot.state.try_lock() {
            st.forget_file();
        }
    }
}
