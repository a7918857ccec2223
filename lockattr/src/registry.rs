//! The per-process registry: one slot per lock, shared by every thread and
//! task of the process, whatever the backend (`backend.rs`).
//!
//! A flock(2) lock belongs to an open file description and a PostgreSQL
//! advisory lock to a session: neither can tell the holders inside one
//! process apart. The slot therefore keeps one handle per lock (a descriptor,
//! a connection) and counts the holders itself: a holder that asks again
//! re-enters, another holder of the process finds the lock busy (or waits in
//! the slot), exactly as another process would. The handle stays open
//! between holds: locking it again costs less than opening it again.

use crate::backend::{Handle, InFlight, Target};
use crate::error::{About, Error, ErrorKind, Holder};
use crate::file::{self, Identity, LockMode, Try};
use crate::holder::HolderId;
use crate::process;
use crate::wait::Waiting;
use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Instant;

/// One lock of this process. Slots live as long as the process (a name, a
/// path or key and a few words per distinct lock), so holds and call sites
/// refer to them without counting references.
pub(crate) struct Slot {
    /// The process that made the slot. After fork(2) the child inherits the
    /// slot, its handle and its holders; they are the parent's, so the
    /// child never locks, unlocks or re-enters through them.
    pid: u32,
    /// The lock's name, for messages; `None` for a lock given by its path.
    name: Option<Box<str>>,
    target: Target,
    /// Whether the handle stays open between holds. Only the first
    /// [`KEPT_OPEN`] slots of a process keep theirs, so a process that
    /// locks many distinct names runs out of neither descriptors nor
    /// connections.
    keep_open: bool,
    state: Mutex<State>,
    /// Signalled when a hold ends or a backend wait settles.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Kept open between holds. `None` before the first hold, after the
    /// lock was found lost, and while a thread waits with it.
    handle: Option<Handle>,
    /// The backend lock we hold through `handle`, if any.
    held: Option<LockMode>,
    /// Holders in this process and how deeply each re-entered.
    holders: Vec<(HolderId, u32)>,
    /// The mode the current holders asked for.
    mode: Option<LockMode>,
    /// A thread waits in the backend with our handle (see `backend_wait`).
    in_flight: Option<InFlight>,
    /// Why the last backend wait failed, for the waiters it was for.
    failure: Option<Error>,
    /// How many callers are waiting in this slot.
    waiters: usize,
    /// A waiter said that it waits (once per lock while it is waited for).
    noticed: bool,
    /// How many of them sleep on the condvar (a wake-up is a system call).
    sleepers: usize,
    /// Async waiters to wake when the slot changes.
    wakers: Vec<Waker>,
}

/// What a caller does when the backend says busy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnBusy {
    /// Report busy.
    Fail,
    /// Wait in the slot until `deadline`; a helper thread waits in the
    /// backend.
    Wait(Option<Instant>),
}

/// What one look at the slot found.
pub(crate) enum Step {
    Held,
    Wait,
}

impl Slot {
    /// The lock file; `None` for a database lock.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.target.path()
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where the lock is, for messages: its file, or its key on a server.
    pub(crate) fn place(&self) -> String {
        match self.target.location() {
            crate::error::LocationRef::File(path) => path.display().to_string(),
            crate::error::LocationRef::Advisory { server, key } => {
                format!("PostgreSQL advisory key {key} on {server}")
            }
        }
    }

    /// Whether a waiter that has waited a second should say so: the first
    /// to ask while the lock is being waited for. Once every waiter has
    /// gone, the next wait may say so again.
    pub(crate) fn first_notice(&self) -> bool {
        let mut st = self.state();
        !std::mem::replace(&mut st.noticed, true)
    }

    pub(crate) fn about(&self) -> About<'_> {
        About {
            name: self.name(),
            at: Some(self.target.location()),
        }
    }

    /// The one global order in which several locks are taken, so that two
    /// callers naming the same locks in different orders cannot deadlock:
    /// by path, or by advisory key.
    pub(crate) fn order(&self, other: &Slot) -> std::cmp::Ordering {
        self.target.order(&other.target)
    }

    pub(crate) fn inherited(&self) -> bool {
        self.pid != process::pid()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the state is
        // still consistent, so carry on rather than poison every later lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// passes (busy), saying the notice of `waiting` when it is due. The
    /// caller must be counted in with [`Slot::set_waiting`] (`waiting`
    /// does that).
    pub(crate) fn wait_blocking(
        &'static self,
        mode: LockMode,
        holder: HolderId,
        deadline: Option<Instant>,
        waiting: &mut Waiting,
    ) -> Result<(), Error> {
        let mut st = self.state();
        loop {
            // Step and sleep under one mutex guard, so no wake-up is lost.
            if let Step::Held = self.step(&mut st, mode, holder, OnBusy::Wait(deadline))? {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                drop(st);
                return Err(self.busy());
            }
            if waiting.notice_at().is_some_and(|at| now >= at) {
                drop(st);
                waiting.say_notice();
                st = self.state();
                continue; // look again: the slot may have changed meanwhile
            }
            st.sleepers += 1;
            st = match [deadline, waiting.notice_at()].into_iter().flatten().min() {
                Some(until) => {
                    let woken = self.changed.wait_timeout(st, until - now);
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
        deadline: Option<Instant>,
        waker: &Waker,
    ) -> Result<Step, Error> {
        let mut st = self.state();
        let step = self.step(&mut st, mode, holder, OnBusy::Wait(deadline))?;
        if let Step::Wait = step
            && !st.wakers.iter().any(|w| w.will_wake(waker))
        {
            st.wakers.push(waker.clone());
        }
        Ok(step)
    }

    /// The busy error for a wait that ran out of time, or for a try-once
    /// while another thread waits; unless something other than a lock file
    /// stands at the path now, which is that error.
    pub(crate) fn busy(&self) -> Error {
        match self.target.refuse_if_not_a_file(self.name()) {
            Err(err) => err,
            Ok(()) => Error::busy(self.about(), self.holder_now()),
        }
    }

    /// Who holds the lock, for messages. Looking it up (`/proc/locks`, a
    /// query) can take milliseconds, so never under the slot's mutex.
    pub(crate) fn holder_now(&self) -> Holder {
        let (in_process, identity) = {
            let st = self.state();
            // While a thread waits, the file it waits on: after a
            // replacement the path names another one.
            let waited = st.in_flight.as_ref().and_then(|wait| wait.identity);
            let open = st.handle.as_ref().and_then(Handle::identity);
            (!st.holders.is_empty(), waited.or(open))
        };
        if in_process {
            return Holder::ThisProcess {
                pid: process::pid(),
            };
        }
        self.target.holder(identity)
    }

    /// Everyone who holds the lock now, without taking it.
    pub(crate) fn holders(&self) -> Result<Vec<Holder>, Error> {
        self.target.holders(self.name())
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
        let upgrading = st.mode == Some(LockMode::Shared) && mode == LockMode::Exclusive;
        if let Some(entry) = st.holders.iter_mut().find(|(id, _)| *id == holder) {
            if upgrading {
                return Err(self.upgrade());
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
                return Err(self.self_deadlock());
            }
            let pid = process::pid();
            return self.busy_or_wait(on_busy, Holder::ThisProcess { pid });
        }
        if let Some(failure) = st.failure.take() {
            return Err(failure);
        }
        if st.in_flight.is_some() {
            return self.busy_or_wait(on_busy, Holder::Unknown);
        }
        loop {
            if st.held.is_none() {
                if st.handle.as_ref().is_some_and(|handle| !handle.usable()) {
                    st.forget_handle();
                }
                if st.handle.is_none() {
                    st.handle = Some(self.target.open(self.name())?);
                }
                let handle = st.handle.as_mut().expect("opened above");
                match handle.try_lock(&self.target, self.name(), mode)? {
                    Try::Locked => st.held = Some(mode),
                    Try::Busy => {
                        return match on_busy {
                            OnBusy::Fail => Err(Error::busy(self.about(), Holder::Unknown)),
                            OnBusy::Wait(deadline) => self.start_backend_wait(st, mode, deadline),
                        };
                    }
                }
            }
            // A waiting thread may have parked another mode than we need:
            // a shared lock for an exclusive caller, or an exclusive one,
            // which would shut out other processes' shared holders, for a
            // shared caller. Let go of it and try again for ours.
            if st.held.is_some_and(|held| held != mode) {
                st.unlock();
                continue;
            }
            let handle = st.handle.as_ref().expect("locked through it");
            match self.target.confirm(self.name(), handle) {
                Ok(true) => {
                    st.mode = Some(mode);
                    st.holders.push((holder, 1));
                    return Ok(Step::Held);
                }
                // Deleted or replaced since we opened it: let go of this
                // handle and start over with what the path names now.
                Ok(false) => st.forget_handle(),
                // Cannot tell (the directory became unsearchable...): let go
                // before saying so, or every other process would find the
                // lock busy until we happened to call again.
                Err(err) => {
                    st.forget_handle();
                    return Err(err);
                }
            }
        }
    }

    /// Whether `holder` holds the lock and the backend still has it: the
    /// file is still named by its path, the database session still holds
    /// the key. A round trip for a database lock.
    pub(crate) fn still_held(&self, holder: HolderId) -> Result<bool, Error> {
        let st = self.state();
        let holds = st.holders.iter().any(|(id, _)| *id == holder);
        match &st.handle {
            Some(handle) if holds && st.held.is_some() => {
                self.target.still_held(self.name(), handle)
            }
            _ => Ok(false),
        }
    }

    /// The fencing token of `holder`'s hold.
    pub(crate) fn fencing_token(&self, holder: HolderId) -> Result<u64, Error> {
        let st = self.state();
        let holds = st.holders.iter().any(|(id, _)| *id == holder);
        match &st.handle {
            Some(handle) if holds && st.held.is_some() => {
                self.target.fencing_token(self.name(), handle)
            }
            _ => {
                let text = "a fencing token is given only to the holder, while it holds the \
                            lock"
                    .to_owned();
                Err(Error::other(ErrorKind::Config, self.about(), text))
            }
        }
    }

    /// Ends one hold of `holder`; the last one in the process unlocks,
    /// after checking that the lock was not lost meanwhile.
    pub(crate) fn release(&self, holder: HolderId) {
        if self.inherited() {
            return; // a forked child never unlocks its parent's lock
        }
        let mut st = self.state();
        let mut orphan = None;
        if st.release(holder) {
            let lost = st
                .handle
                .as_ref()
                .and_then(|handle| self.target.lost(handle));
            match lost {
                // Our handle holds an orphan: the next hold opens afresh.
                Some(lost) => {
                    st.held = None;
                    let kept = st.handle.take().and_then(Handle::after_loss);
                    orphan = Some((kept, lost));
                }
                None => st.unlock(),
            }
        }
        if !self.keep_open && st.holders.is_empty() {
            st.forget_handle();
        }
        if st.waiters > 0 {
            self.notify(st);
        } else {
            drop(st);
        }
        // Out of the mutex: the line may go to the program's own function
        // (`set_messages`), which may use this lock again.
        if let Some((kept, lost)) = orphan {
            lost.report(&self.target, kept, self.name());
        }
    }

    /// Closes the handle kept between holds, unless the lock is held or
    /// waited for.
    fn close_if_idle(&self) {
        if self.inherited() {
            return;
        }
        let mut st = self.state();
        if st.holders.is_empty() && st.waiters == 0 && st.in_flight.is_none() {
            st.forget_handle();
        }
    }

    /// Counts a caller in (or out of) the waiters of this slot.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        let mut st = self.state();
        if waiting {
            st.waiters += 1;
            return;
        }
        st.waiters -= 1;
        if st.waiters == 0 {
            st.noticed = false;
            if let Some(in_flight) = &st.in_flight {
                // Nobody wants what the backend wait would bring.
                in_flight.cancel();
            }
        }
        st.unpark_if_unwanted();
        // A task that gave up (timed out, dropped) leaves its waker here;
        // which one is not known, so every task still waiting is woken to
        // register again, and the list never outgrows the waiters.
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Why waiting needs a thread: flock(2) blocks in the kernel and only
    /// a signal could interrupt it (lockattr sends none), and a database
    /// wait blocks on its connection. So every wait (sync or async, with a
    /// deadline or without) waits in the slot — threads on the condvar,
    /// tasks by waker, so that a waiter itself says the "still waiting"
    /// notice — while
    /// one thread per busy lock waits in the backend with the slot's
    /// own handle. When the backend grants the lock, that thread parks it in
    /// the slot and wakes the waiters; the first compatible one takes it. If
    /// every waiter gave up meanwhile, the lock is let go at once: a
    /// timed-out or cancelled wait leaves at most this one thread behind,
    /// and only until the holder lets go (a file) or the cancel arrives (a
    /// database, whose wait ends at `deadline` by itself).
    fn start_backend_wait(
        &'static self,
        st: &mut State,
        mode: LockMode,
        deadline: Option<Instant>,
    ) -> Result<Step, Error> {
        let handle = st.handle.take().expect("opened before locking");
        let in_flight = handle.in_flight();
        let spawned = std::thread::Builder::new()
            .name("lockattr-wait".into())
            .spawn(move || self.backend_wait(mode, handle, deadline));
        match spawned {
            Ok(_) => {
                st.in_flight = Some(in_flight);
                Ok(Step::Wait)
            }
            Err(err) => {
                let text = format!("cannot start a thread to wait for the lock: {err}");
                Err(Error::other(ErrorKind::Io, self.about(), text))
            }
        }
    }

    /// Waits in the backend, then parks what it granted in the slot.
    /// Whoever takes it confirms it (a file: the path still names it).
    fn backend_wait(&self, mode: LockMode, mut handle: Handle, deadline: Option<Instant>) {
        let locked = handle.lock_blocking(&self.target, self.name(), mode, deadline);
        let mut st = self.state();
        st.handle = Some(handle);
        match locked {
            Ok(Try::Locked) => st.held = Some(mode),
            Ok(Try::Busy) => {} // timed out or cancelled: the waiters look again
            Err(err) => st.failure = Some(err),
        }
        if st.held.is_none() && st.handle.as_ref().is_some_and(|handle| !handle.usable()) {
            st.forget_handle(); // a cancelled wait may have been granted after all
        }
        st.in_flight = None;
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

    fn busy_or_wait(&self, on_busy: OnBusy, holder: Holder) -> Result<Step, Error> {
        match on_busy {
            OnBusy::Fail => Err(Error::busy(self.about(), holder)),
            OnBusy::Wait(_) => Ok(Step::Wait),
        }
    }

    fn upgrade(&self) -> Error {
        let text = "an exclusive hold was asked for inside a shared hold of the same lock by \
                    the same caller; upgrading could deadlock with another shared holder doing \
                    the same, so it is refused: take the outer hold exclusive"
            .to_owned();
        Error::other(ErrorKind::WouldDeadlock, self.about(), text)
    }

    fn self_deadlock(&self) -> Error {
        let text = "this thread already holds the lock in sync code and is now waiting for it \
                    as another holder (an async fn driven by `block_on` inside the hold?); that \
                    wait could never end, so it is refused"
            .to_owned();
        Error::other(ErrorKind::WouldDeadlock, self.about(), text)
    }
}

impl State {
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

    /// Lets go of the handle; closing it drops any lock held through it.
    fn forget_handle(&mut self) {
        self.held = None;
        self.handle = None;
    }

    fn unlock(&mut self) {
        if let (Some(mode), Some(handle)) = (self.held.take(), &mut self.handle) {
            if handle.usable() {
                handle.unlock(mode);
            } else {
                self.handle = None; // closing lets go of everything it holds
            }
        }
    }

    /// A lock the waiting thread parked for waiters who have all left.
    fn unpark_if_unwanted(&mut self) {
        if self.waiters == 0 && self.holders.is_empty() && self.in_flight.is_none() {
            self.unlock();
            self.failure = None;
        }
    }
}

/// Where the registry finds a slot besides the path a lock spelled.
#[derive(Hash, PartialEq, Eq)]
enum Key {
    /// A lock file by its directory's identity and its file name: two
    /// spellings of one file (a symlinked directory; `/var/run/lock` beside
    /// `/run/lock`) must be one lock in this process, or a nested call
    /// would find itself busy.
    File(Identity, OsString),
    /// A database lock by its advisory key (one server per process).
    #[cfg(feature = "postgres")]
    Advisory(i64),
}

/// The hashers have fixed keys: the keys are our own, and a random seed
/// would cost a getrandom(2) on the first lock.
type Map<K> = HashMap<K, &'static Slot, BuildHasherDefault<DefaultHasher>>;

struct Registry {
    pid: u32,
    /// Lock files by the path as the lock spelled it: looked up with a
    /// borrowed path, so a repeated call allocates nothing.
    by_path: Map<PathBuf>,
    by_key: Map<Key>,
    count: usize,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// How many locks a process keeps open between holds.
const KEPT_OPEN: usize = 64;

/// The registry of this process, after letting go of a forked parent's.
fn registry() -> MutexGuard<'static, Option<Registry>> {
    let pid = process::pid();
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if registry.as_ref().is_none_or(|registry| registry.pid != pid) {
        if let Some(inherited) = registry.take() {
            forget_inherited(inherited);
        }
        *registry = Some(Registry {
            pid,
            by_path: Map::default(),
            by_key: Map::default(),
            count: 0,
        });
    }
    registry
}

impl Registry {
    fn insert(&mut self, name: Option<&str>, target: Target) -> &'static Slot {
        let slot: &'static Slot = Box::leak(Box::new(Slot {
            pid: self.pid,
            name: name.map(Box::from),
            target,
            keep_open: self.count < KEPT_OPEN,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }));
        self.count += 1;
        slot
    }
}

/// The slot for the lock file `path` (named `name`, or given by its path),
/// made on first use. A new spelling of a known file is looked up by its
/// directory's identity, once; the answer stays for the process.
pub(crate) fn file_slot(name: Option<&str>, path: &Path) -> &'static Slot {
    let mut guard = registry();
    let registry = guard.as_mut().expect("made above");
    if let Some(slot) = registry.by_path.get(path) {
        return slot;
    }
    let by_file = file_key(path);
    let known = by_file.as_ref().and_then(|key| registry.by_key.get(key));
    // The slot's own directory must still be that one: a directory removed
    // since leaves its inode number free for a new one.
    let slot = match known.filter(|slot| slot.path().and_then(file_key) == by_file) {
        Some(&slot) => slot,
        None => {
            let slot = registry.insert(name, Target::file(path));
            if let Some(key) = by_file {
                registry.by_key.insert(key, slot);
            }
            slot
        }
    };
    registry.by_path.insert(path.to_owned(), slot);
    slot
}

/// The slot for advisory `key` on the process's server.
#[cfg(feature = "postgres")]
pub(crate) fn advisory_slot(
    name: Option<&str>,
    server: &'static crate::pg::Server,
    key: i64,
) -> &'static Slot {
    let mut guard = registry();
    let registry = guard.as_mut().expect("made above");
    if let Some(slot) = registry.by_key.get(&Key::Advisory(key)) {
        return slot;
    }
    let slot = registry.insert(name, Target::Advisory { server, key });
    registry.by_key.insert(Key::Advisory(key), slot);
    slot
}

/// The lock file's directory (by device and inode) and file name; `None`
/// when the directory cannot be looked at (the open will say why).
fn file_key(path: &Path) -> Option<Key> {
    let dir = file::identity_of_dir(path.parent()?)?;
    Some(Key::File(dir, path.file_name()?.to_owned()))
}

/// Closes the handles this process keeps between holds of the locks it
/// does not hold or wait for now.
pub(crate) fn close_idle() {
    let slots: Vec<&'static Slot> = {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        match &*registry {
            Some(registry) if registry.pid == process::pid() => registry
                .by_path
                .values()
                .chain(registry.by_key.values())
                .copied()
                .collect(),
            _ => return,
        }
    };
    for slot in slots {
        slot.close_if_idle();
    }
}

/// In a forked child: the parent's slots are not ours. Let go of the
/// handles we can (see `Handle::abandon`), and leave the rest to the guards
/// that still point at them.
fn forget_inherited(registry: Registry) {
    for slot in registry
        .by_path
        .into_values()
        .chain(registry.by_key.into_values())
    {
        // try_lock: a parent thread may have held the mutex at fork time.
        if let Ok(mut st) = slot.state.try_lock() {
            st.held = None;
            if let Some(handle) = st.handle.take() {
                handle.abandon();
            }
        }
    }
}
