//! What the attribute's expansion calls, and [`TestDir`] for lockattr's
//! own tests and doc examples. Not a stable API: it changes with
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
use crate::template::NameBuf;
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

/// A function's name as libtest names the test it may be: its module path
/// without the crate's name, then its own name (`tests::uses_db`).
///
/// The attribute gives this (in test builds) to functions it cannot see a
/// test attribute on: `#[test]` written above `#[exclusive]` is expanded
/// first and leaves no trace. libtest runs every test on a thread named
/// after the test, also with `--test-threads=1`, so the thread's name tells
/// whether the function runs as that test. Looked at only once the lock is
/// found busy: an uncontended call costs nothing more.
#[derive(Debug)]
pub struct TestName {
    module_path: &'static str,
    name: &'static str,
}

impl TestName {
    pub const fn new(module_path: &'static str, name: &'static str) -> TestName {
        TestName { module_path, name }
    }

    fn is_running(&self) -> bool {
        let thread = std::thread::current();
        let Some(running) = thread.name() else {
            return false;
        };
        let name = match self.module_path.split_once("::") {
            Some((_crate, module)) => running
                .strip_prefix(module)
                .and_then(|rest| rest.strip_prefix("::")),
            None => Some(running),
        };
        name == Some(self.name)
    }
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

/// A lock directory of its own for one process of lockattr's tests and doc
/// examples, so that they never meet another run's locks, or anything else
/// holding a lock of the same name: `$TMPDIR/lockattr-test.PID.N`, mode
/// 1777 like /tmp (the multi-user tests' users share it), removed on drop.
/// One left behind by a killed process is removed by a later
/// [`TestDir::new`], which tells it by its owner's flock being gone. Not
/// for users.
pub struct TestDir {
    path: std::path::PathBuf,
    owner: u32,
    // Holds an flock on the directory for as long as its owner lives.
    _alive: std::os::fd::OwnedFd,
}

impl TestDir {
    const PREFIX: &str = "lockattr-test.";

    /// # Panics
    ///
    /// When the directory cannot be made: a test cannot go on without it.
    #[allow(clippy::new_without_default)]
    #[track_caller]
    pub fn new() -> TestDir {
        use rustix::fs::Mode;
        let tmp = std::env::temp_dir();
        sweep(&tmp);
        let owner = std::process::id();
        for n in 0u64.. {
            let path = tmp.join(format!("{}{owner}.{n}", TestDir::PREFIX));
            match rustix::fs::mkdir(&path, Mode::RWXU) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(errno) => panic!("create {}: {errno}", path.display()),
            }
            // A sweep by another process may take it before we hold it.
            let Some(alive) = hold(&path) else { continue };
            let mode = Mode::from_raw_mode(0o1777);
            if let Err(errno) = rustix::fs::fchmod(&alive, mode) {
                panic!("chmod 1777 {}: {errno}", path.display());
            }
            return TestDir {
                path,
                owner,
                _alive: alive,
            };
        }
        unreachable!("a free name among all of u64")
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Removes the directory and everything in it; in a forked child, which
    /// does not own it, does nothing.
    pub fn remove(&self) {
        if std::process::id() == self.owner {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Opens and flocks the directory at `path`, if nobody holds it and it is
/// still the one at `path` once held.
fn hold(path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    use rustix::fs::{FlockOperation, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, rustix::fs::Mode::empty()).ok()?;
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).ok()?;
    let (held, now) = (rustix::fs::fstat(&fd).ok()?, rustix::fs::lstat(path).ok()?);
    (held.st_dev == now.st_dev && held.st_ino == now.st_ino).then_some(fd)
}

/// Removes the test directories in `tmp` whose owner is gone.
fn sweep(tmp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = name
            .to_str()
            .is_some_and(|name| name.starts_with(TestDir::PREFIX));
        if stale && let Some(_held) = hold(&entry.path()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// For doc examples, as a hidden first line
/// `# let _dir = lockattr::__private::doc_dir();`: a fresh [`TestDir`],
/// pinned as this process's default lock directory.
#[track_caller]
pub fn doc_dir() -> TestDir {
    let dir = TestDir::new();
    if let Err(err) = crate::set_default_dir(dir.path()) {
        panic!("pin the example's lock directory: {err}");
    }
    dir
}

// ------------------------------------------------ names made at each call

/// One part of a lock name written in the attribute: fixed text (checked
/// at compile time), or a parameter's value, escaped at run time.
pub enum Part<'a> {
    Fixed(&'static str),
    /// A value's own bytes (`&str`, `String`, `Path`, `OsStr`...).
    Bytes(&'a [u8]),
    /// A value as `Display` writes it (numbers, enums...).
    Display(&'a dyn std::fmt::Display),
}

/// A lock name written in the attribute: the template as written (for
/// messages) and its parts.
pub struct Name<'a> {
    template: &'static str,
    parts: &'a [Part<'a>],
}

impl<'a> Name<'a> {
    pub const fn new(template: &'static str, parts: &'a [Part<'a>]) -> Name<'a> {
        Name { template, parts }
    }

    fn slot(&self, options: &Lock) -> Result<&'static Slot, Error> {
        let mut buf = NameBuf::new();
        for part in self.parts {
            match part {
                Part::Fixed(text) => buf.push_fixed(text),
                Part::Bytes(bytes) => buf.push_value(bytes),
                Part::Display(value) => buf.push_display(*value),
            }
        }
        options.slot_for(buf.finish(self.template)?)
    }
}

/// A parameter's value, turned into a [`Part`] by whichever of
/// [`ByBytes`] and [`ByDisplay`] applies first (autoref specialization: the
/// expansion calls `(&Value(&param)).part()`).
pub struct Value<'a, T: ?Sized>(pub &'a T);

pub trait ByBytes<'a> {
    fn part(&self) -> Part<'a>;
}

impl<'a, T: AsRef<std::ffi::OsStr> + ?Sized> ByBytes<'a> for Value<'a, T> {
    fn part(&self) -> Part<'a> {
        Part::Bytes(self.0.as_ref().as_encoded_bytes())
    }
}

#[diagnostic::on_unimplemented(
    message = "`{T}` cannot be part of a lock name: it implements neither `Display` nor `AsRef<OsStr>`",
    label = "this parameter is a placeholder of the lock name",
    note = "implement `Display` for it, or name a parameter that has it"
)]
pub trait ByDisplay<'a, T: ?Sized> {
    fn part(&self) -> Part<'a>;
}

impl<'a, T: std::fmt::Display> ByDisplay<'a, T> for &Value<'a, T> {
    fn part(&self) -> Part<'a> {
        Part::Display(self.0)
    }
}

/// The locks of an attribute's names, each once, in the one global order.
/// No allocation for a single name.
pub struct Slots {
    first: &'static Slot,
    more: Vec<&'static Slot>,
}

/// The slots of `names` with `options`' directory.
pub fn resolve(options: &'static Lock, names: &[Name<'_>]) -> Result<Slots, Error> {
    let (first, rest) = names.split_first().expect("the attribute gives a name");
    let first = first.slot(options)?;
    if rest.is_empty() {
        return Ok(Slots {
            first,
            more: Vec::new(),
        });
    }
    let mut all = vec![first];
    for name in rest {
        all.push(name.slot(options)?);
    }
    all.sort_by(|a, b| a.order(b));
    all.dedup_by(|a, b| std::ptr::eq(*a, *b));
    let first = all.remove(0);
    Ok(Slots { first, more: all })
}

/// The locks of a sync function whose names are made at each call: all
/// taken, in order, as the current thread (or task), as `options` say; a
/// test waits as [`enter`] explains.
pub fn enter_names(
    options: &'static Lock,
    names: &[Name<'_>],
    test: Option<&'static TestName>,
) -> Result<Hold, Error> {
    let slots = resolve(options, names)?;
    let holder = HolderId::current();
    match take_all(options, &slots, holder) {
        Err(err) if err.is_busy() && test.is_some_and(TestName::is_running) => {
            take_all(&options.wait(), &slots, holder)
        }
        taken => taken,
    }
}

fn take_all(options: &Lock, slots: &Slots, holder: HolderId) -> Result<Hold, Error> {
    let deadline = deadline(options);
    let mut hold = options.take(slots.first, holder)?;
    for &slot in &slots.more {
        // Dropping `hold` on an error lets go of the locks taken so far.
        let left = remaining(options, deadline);
        crate::wait::acquire_blocking(slot, options.mode, left, holder)?;
        hold.more.push(slot);
    }
    Ok(hold)
}

/// The locks of an async function whose names are made at each call. The
/// names were resolved in a statement of their own, so that the borrowed
/// values do not live across an `.await` (the future stays `Send`).
pub async fn enter_slots_async(
    slots: Result<Slots, Error>,
    options: &'static Lock,
) -> Result<Hold, Error> {
    let slots = slots?;
    let holder = HolderId::for_task();
    let deadline = deadline(options);
    let mut hold: Option<Hold> = None;
    for slot in std::iter::once(slots.first).chain(slots.more) {
        match remaining(options, deadline) {
            Wait::No => slot.try_now(options.mode, holder)?,
            Wait::Forever => AcquireAsync::new(slot, options.mode, None, holder).await?,
            Wait::For(left) => AcquireAsync::new(slot, options.mode, Some(left), holder).await?,
        }
        match &mut hold {
            Some(hold) => hold.more.push(slot),
            None => hold = Some(Hold::one(slot, holder)),
        }
    }
    Ok(hold.expect("at least one lock"))
}

fn deadline(options: &Lock) -> Option<std::time::Instant> {
    match options.wait {
        Wait::For(limit) => std::time::Instant::now().checked_add(limit),
        _ => None,
    }
}

/// What is left of a bounded wait for the next lock of several.
fn remaining(options: &Lock, deadline: Option<std::time::Instant>) -> Wait {
    match (options.wait, deadline) {
        (Wait::For(_), Some(deadline)) => {
            match deadline.saturating_duration_since(std::time::Instant::now()) {
                std::time::Duration::ZERO => Wait::No,
                left => Wait::For(left),
            }
        }
        (wait, _) => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::TestName;

    /// Whether `test` is running, asked on a thread named as libtest would.
    fn running_as(thread: &str, test: &'static TestName) -> bool {
        std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn(|| test.is_running())
            .expect("spawn a thread")
            .join()
            .expect("the thread")
    }

    #[test]
    fn a_test_is_known_by_its_threads_name() {
        static TOP: TestName = TestName::new("serial_a", "uses_db");
        static NESTED: TestName = TestName::new("mytool::db::tests", "uses_db");
        assert!(running_as("uses_db", &TOP));
        assert!(running_as("db::tests::uses_db", &NESTED));
        for other in [
            "uses_db_too",
            "tests::uses_db",
            "mytool::db::tests::uses_db",
            "db::tests::uses_db2",
            "db::testsuses_db",
            "main",
        ] {
            assert!(!running_as(other, &NESTED), "{other}");
        }
        assert!(!running_as("db::tests::uses_db", &TOP));
        let unnamed = std::thread::spawn(|| TOP.is_running()).join().unwrap();
        assert!(!unnamed, "a thread without a name runs no test");
    }
}
