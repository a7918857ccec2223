//! The public API behind the attribute: [`Lock`], its guard, and the
//! helpers for scripts.

use crate::backend::{self, Backend};
use crate::error::{self, Error, ErrorKind};
use crate::file::{self, LockMode};
use crate::holder::HolderId;
use crate::holder::Scoped;
use crate::name::{self, LockName};
use crate::place::{self, Place};
use crate::registry::{self, Slot};
use crate::wait::{self, AcquireAsync, Wait};
use std::future::Future;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A lock and how to take it: what `#[exclusive(...)]` expands to.
///
/// Its builders are `const fn`s (all but [`Lock::in_dir`] and
/// [`Lock::at_file`], which take paths known only at run time), so a lock
/// can be declared once:
///
/// ```
/// # let _dir = lockattr::__private::doc_dir();
/// use lockattr::{Lock, LockName};
/// use std::time::Duration;
///
/// const CACHE: Lock = Lock::new(LockName::new("doc-cache")).shared().wait_for(Duration::from_secs(5));
///
/// let first = CACHE.acquire()?;
/// let second = std::thread::spawn(|| CACHE.acquire().map(drop)).join().unwrap();
/// assert!(second.is_ok(), "shared holders run together");
/// drop(first);
/// # Ok::<(), lockattr::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Lock {
    pub(crate) place: Place,
    pub(crate) mode: LockMode,
    pub(crate) wait: Wait,
}

impl Lock {
    /// An exclusive lock on `NAME.lock` in the default directory that does
    /// not wait.
    #[must_use = "a `Lock` does nothing until it is acquired"]
    pub const fn new(name: LockName) -> Lock {
        Lock {
            place: Place::Named {
                name: name.as_str(),
                dir: None,
            },
            mode: LockMode::Exclusive,
            wait: Wait::No,
        }
    }

    /// A lock on exactly this file, which must be an absolute path.
    #[must_use = "a `Lock` does nothing until it is acquired"]
    pub const fn at_path(path: &'static str) -> Lock {
        Lock {
            place: Place::Path(path),
            mode: LockMode::Exclusive,
            wait: Wait::No,
        }
    }

    /// What `#[exclusive]` uses for names made at each call: the options
    /// alone. Not a stable API.
    #[doc(hidden)]
    #[must_use = "a `Lock` does nothing until it is acquired"]
    pub const fn __names() -> Lock {
        Lock {
            place: Place::Names { dir: None },
            mode: LockMode::Exclusive,
            wait: Wait::No,
        }
    }

    /// Puts `NAME.lock` in `dir`, an absolute path, instead of the default
    /// directory. No effect on a lock made with [`Lock::at_path`].
    #[must_use = "this returns a new `Lock`; the one it is called on is unchanged"]
    pub const fn dir(mut self, dir: &'static str) -> Lock {
        match self.place {
            Place::Named { name, .. } => {
                self.place = Place::Named {
                    name,
                    dir: Some(dir),
                }
            }
            Place::Names { .. } => self.place = Place::Names { dir: Some(dir) },
            Place::Path(_) => {}
        }
        self
    }

    /// Puts `NAME.lock` in `dir`, a directory known only at run time (a
    /// `--lock-dir` flag, a configuration file), instead of the default.
    /// As [`Lock::dir`], which takes a `&'static str`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `dir` is relative or not UTF-8.
    pub fn in_dir(self, dir: impl AsRef<Path>) -> Result<Lock, Error> {
        Ok(self.dir(kept_path(dir.as_ref(), "dir")?))
    }

    /// A lock on exactly this file, a path known only at run time. As
    /// [`Lock::at_path`], which takes a `&'static str`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `path` is relative or not UTF-8.
    pub fn at_file(path: impl AsRef<Path>) -> Result<Lock, Error> {
        Ok(Lock::at_path(kept_path(path.as_ref(), "path")?))
    }

    /// Takes the lock shared: shared holders run together; an exclusive
    /// holder excludes everyone.
    #[must_use = "this returns a new `Lock`; the one it is called on is unchanged"]
    pub const fn shared(mut self) -> Lock {
        self.mode = LockMode::Shared;
        self
    }

    /// Waits until the lock is free instead of returning busy.
    #[must_use = "this returns a new `Lock`; the one it is called on is unchanged"]
    pub const fn wait(mut self) -> Lock {
        self.wait = Wait::Forever;
        self
    }

    /// Waits at most `limit`, then returns busy.
    #[must_use = "this returns a new `Lock`; the one it is called on is unchanged"]
    pub const fn wait_for(mut self, limit: Duration) -> Lock {
        self.wait = Wait::For(limit);
        self
    }

    /// The lock file: `DIR/NAME.lock`, or the file of [`Lock::at_path`].
    /// Resolves the default directory (settling it for the process, see
    /// [`set_default_dir`](crate::set_default_dir)) but opens and creates
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the directory (`dir`, `LOCKATTR_DIR`) or
    /// the path is relative or holds a NUL byte.
    pub fn path(&self) -> Result<PathBuf, Error> {
        self.place.resolve()
    }

    /// Who holds this lock now, without taking it: empty when nobody does.
    /// For a `status` command, which must not make a real command fail by
    /// taking the lock to look, nor create a missing lock file. It opens
    /// no descriptor on the lock file (it reads `/proc/locks`; on a
    /// PostgreSQL server, `pg_locks`). Several holders for a shared lock;
    /// [`Holder::ThisProcess`](crate::Holder::ThisProcess) for this one.
    ///
    /// ```
    /// # let _dir = lockattr::__private::doc_dir();
    /// use lockattr::{Lock, LockName};
    ///
    /// const DEPLOY: Lock = Lock::new(LockName::new("doc-status"));
    /// assert!(DEPLOY.holders()?.is_empty());
    /// let _held = DEPLOY.acquire()?;
    /// let holders = DEPLOY.holders()?;
    /// assert_eq!(holders[0].pid(), Some(std::process::id()));
    /// # Ok::<(), lockattr::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`] where holders cannot be seen (no
    /// `/proc/locks`: macOS, the BSDs); [`ErrorKind::NotRegularFile`] when
    /// something else stands at the path; [`ErrorKind::Config`] as for
    /// [`Lock::acquire`]; [`ErrorKind::Io`] when the PostgreSQL server
    /// cannot be asked. A missing lock file is no error: nobody holds it.
    pub fn holders(&self) -> Result<Vec<crate::Holder>, Error> {
        self.slot()?.holders()
    }

    /// Whether the caller (this thread, or the `#[exclusive]` task being
    /// polled) holds this lock and still has it: for a lock file, that the
    /// path still names the file it locked; for a PostgreSQL lock, that its
    /// session still holds the key (one round trip). Inside an
    /// `#[exclusive(NAME)]` function, `Lock::new(NAME).still_held()` asks
    /// about that function's hold.
    ///
    /// `Ok(false)` when the caller does not hold the lock, and when it held
    /// it but lost it: its file deleted or replaced, its database session
    /// ended.
    ///
    /// # Errors
    ///
    /// When the question cannot be answered: [`ErrorKind::Io`] when the
    /// path cannot be looked at (its directory is no longer searchable) or
    /// the server cannot be reached on a session that still looks alive;
    /// [`ErrorKind::Config`] as for [`Lock::acquire`].
    pub fn still_held(&self) -> Result<bool, Error> {
        self.slot()?.still_held(HolderId::current())
    }

    /// The fencing token of the caller's hold: a number that grows with
    /// every acquisition of this lock by anyone, across server restarts, for
    /// the body to pass to the system it changes, which then refuses writes
    /// carrying a smaller token than one it has seen (so a holder that lost
    /// its lock without knowing cannot overwrite its successor's work).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`] for a lock file (flock(2) has no such
    /// number); [`ErrorKind::Config`] when the caller does not hold the
    /// lock; [`ErrorKind::Io`] when the server cannot be asked.
    pub fn fencing_token(&self) -> Result<u64, Error> {
        self.slot()?.fencing_token(HolderId::current())
    }

    /// Takes the lock for this thread, or for the `#[exclusive]` task being
    /// polled, waiting as the lock says. The guard belongs to the thread
    /// (it is not `Send`); in async code use [`Lock::acquire_async`].
    ///
    /// A holder that asks again re-enters: the lock is let go when its
    /// outermost guard drops. What `#[exclusive]` does around a function
    /// body is this call (see [the attribute's
    /// page](crate::exclusive#the-hand-written-equivalent)).
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Busy`]: another holder has it ([`Error::is_busy`]),
    ///   after waiting as long as [`Lock::wait`] or [`Lock::wait_for`]
    ///   said. Every other kind is a failure to set the lock up:
    /// - [`ErrorKind::Io`]: the OS refused to open, create, check or lock
    ///   the file (a missing directory, a permission, a read-only file
    ///   system, no descriptor left), or the PostgreSQL server could not be
    ///   reached; [`Error::os_error`] gives the OS error.
    /// - [`ErrorKind::NotRegularFile`]: a symbolic link, FIFO, directory,
    ///   socket or device stands at the lock file's path.
    /// - [`ErrorKind::WouldDeadlock`]: an exclusive request inside this
    ///   holder's own shared hold, or a wait beneath a hold of the same lock
    ///   by this thread (an async fn driven by `block_on` inside it).
    /// - [`ErrorKind::Config`]: a relative `dir` or `LOCKATTR_DIR`, or a
    ///   `LOCKATTR_URL` this build cannot honour.
    pub fn acquire(&self) -> Result<Guard, Error> {
        let hold = self.take(self.slot()?, HolderId::current())?;
        Ok(Guard {
            hold,
            _thread: PhantomData,
        })
    }

    /// Takes the lock for the current task, waiting as the lock says
    /// without blocking the thread that polls it: the async counterpart of
    /// [`Lock::acquire`], which the attribute on an `async fn` uses too.
    /// The guard is `Send`, so it can be held across `.await` in a spawned
    /// task. Dropping the future before it completes withdraws from the
    /// wait (cancellation-safe): no lock is kept for nobody.
    ///
    /// The holder is the enclosing `#[exclusive]` task if there is one, else
    /// a new one. Nested `#[exclusive]` calls re-enter only when polled as
    /// that holder: run them inside [`AsyncGuard::scope`].
    ///
    /// ```
    /// # let _dir = lockattr::__private::doc_dir();
    /// use lockattr::{Lock, LockName};
    ///
    /// const DEPLOY: Lock = Lock::new(LockName::new("doc-async")).wait();
    ///
    /// #[lockattr::exclusive("doc-async", wait)]
    /// async fn step() -> Result<u32, lockattr::Error> {
    ///     Ok(1)
    /// }
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # runtime.block_on(async {
    /// let task = tokio::spawn(async {
    ///     let guard = DEPLOY.acquire_async().await?;
    ///     tokio::task::yield_now().await; // held across `.await`
    ///     guard.scope(step()).await // nested: re-enters
    /// });
    /// assert_eq!(task.await.unwrap()?, 1);
    /// # Ok::<(), lockattr::Error>(())
    /// # })?;
    /// # Ok::<(), lockattr::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub fn acquire_async(
        &self,
    ) -> impl Future<Output = Result<AsyncGuard, Error>> + Send + 'static {
        let lock = *self;
        async move {
            let holder = HolderId::for_task();
            let hold = lock.take_async(lock.slot()?, holder).await?;
            Ok(AsyncGuard { hold })
        }
    }

    /// Takes `slot` for `holder` as an async task, as `self.wait` says.
    pub(crate) async fn take_async(
        &self,
        slot: &'static Slot,
        holder: HolderId,
    ) -> Result<Hold, Error> {
        match self.wait {
            Wait::No => slot.try_now(self.mode, holder)?,
            Wait::Forever => AcquireAsync::new(slot, self.mode, None, holder).await?,
            Wait::For(limit) => AcquireAsync::new(slot, self.mode, Some(limit), holder).await?,
        }
        Ok(Hold::one(slot, holder))
    }

    /// The registry's slot for this lock, on the process's backend: for a
    /// name, without allocating once the slot exists.
    pub(crate) fn slot(&self) -> Result<&'static Slot, Error> {
        let name = self.place.name();
        if let Some(name) = name {
            return self.slot_for(name);
        }
        match backend::current(error::About::named(name))? {
            Backend::File => Ok(registry::file_slot(name, &self.path()?)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(server) => {
                let key = crate::pg::advisory_key(self.place.key_name());
                Ok(registry::advisory_slot(name, server, key))
            }
        }
    }

    pub(crate) fn take(&self, slot: &'static Slot, holder: HolderId) -> Result<Hold, Error> {
        wait::acquire_blocking(slot, self.mode, self.wait, holder)?;
        Ok(Hold::one(slot, holder))
    }

    /// The slot for `name`, a name made at run time, with this lock's
    /// options (its directory): no allocation once the slot exists.
    pub(crate) fn slot_for(&self, name: &str) -> Result<&'static Slot, Error> {
        match backend::current(error::About::named(Some(name)))? {
            Backend::File => {
                let dir = place::dir_of(&self.place, name)?;
                Ok(place::with_file(dir, name, |path| {
                    registry::file_slot(Some(name), path)
                }))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(server) => {
                let key = crate::pg::advisory_key(name);
                Ok(registry::advisory_slot(Some(name), server, key))
            }
        }
    }
}

/// A directory or file given at run time, kept for the process.
fn kept_path(path: &Path, what: &str) -> Result<&'static str, Error> {
    let problem = match path.to_str() {
        Some(text) if path.is_absolute() => return Ok(crate::template::keep(text)),
        Some(_) => "is relative; give an absolute path so every caller reaches the same file",
        None => "is not UTF-8",
    };
    let text = format!("the {what} {} {problem}", path.display());
    Err(Error::other(ErrorKind::Config, error::About::NOTHING, text))
}

/// The lock file that `#[exclusive(NAME)]` uses in this process, made to
/// exist, for shell scripts that share the lock through `flock(1)`.
///
/// The file is created if missing exactly as a lock would create it (mode
/// 0644 whatever the umask, never through a symlink), so that a script can
/// open it read-only. That matters: `flock FILE cmd` opens with `O_CREAT`,
/// which fails as root under `fs.protected_regular` on a file another user
/// created, and creates a private file under a restrictive umask. A script
/// should open the file read-only on a descriptor of its own instead:
///
/// ```sh
/// lock=$(mytool lock-path) || exit 1    # mytool prints lockattr::lock_path("build-deploy")
/// ( flock -n 9 || exit 75; [ /dev/fd/9 -ef "$lock" ] || exit 75; make ) 9<"$lock"
/// ```
///
/// ```
/// # let _dir = lockattr::__private::doc_dir();
/// let path = lockattr::lock_path("build-deploy")?;
/// assert!(path.ends_with("build-deploy.lock"));
/// assert!(path.is_file(), "made to exist for flock(1)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Config`] for an invalid name, a relative `LOCKATTR_DIR`,
/// or when `LOCKATTR_URL` is set (the lock is then not a local file); and
/// whatever opening the file can fail with, as for a lock.
pub fn lock_path(name: &str) -> Result<PathBuf, Error> {
    let about = error::About::named(Some(name));
    if let Err(rule) = name::check(name) {
        let text = format!("invalid lock name: {rule}, as in `build-deploy`");
        return Err(Error::other(ErrorKind::Config, about, text));
    }
    let mut path = place::default_dir(Some(name))?.join(name);
    path.as_mut_os_string().push(".lock");
    let about = error::About::file(Some(name), &path);
    match backend::current(about)? {
        Backend::File => {}
        #[cfg(feature = "postgres")]
        Backend::Postgres(server) => {
            let key = crate::pg::advisory_key(name);
            let text = format!(
                "LOCKATTR_URL is set, so this lock is not a local file but PostgreSQL advisory \
                 key {key} on {}: take it with `SELECT pg_advisory_lock({key})`",
                server.label()
            );
            return Err(Error::other(ErrorKind::Config, about, text));
        }
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .expect("a checked name and an absolute directory without NUL");
    let ctx = file::Ctx {
        name: Some(name),
        path: &path,
        c_path: &c_path,
    };
    drop(file::open(ctx)?);
    Ok(path)
}

/// Closes what this process keeps open between holds of the locks that it
/// neither holds nor waits for now: one descriptor per lock file (for its
/// first 64 lock files), which saves reopening the file on the next hold
/// but keeps its file system busy for `umount`. The next hold opens the
/// file again. A process also keeps a few hundred bytes per distinct lock
/// file for its lifetime; that memory stays.
pub fn close_idle() {
    registry::close_idle();
}

/// Holds a lock until dropped. It belongs to the thread that took it, so it
/// is not `Send`: moving it to another thread would let the first thread
/// re-enter while the second still works.
#[must_use = "the lock is released when the guard drops"]
pub struct Guard {
    hold: Hold,
    _thread: PhantomData<*const ()>,
}

/// What both guards tell about their hold.
macro_rules! hold_methods {
    () => {
        /// The lock file; `None` for a lock on a PostgreSQL server.
        pub fn path(&self) -> Option<&Path> {
            self.hold.slot.path()
        }

        /// Whether this guard's lock is still held (see [`Lock::still_held`]).
        ///
        /// # Errors
        ///
        /// As [`Lock::still_held`]: when the question cannot be answered.
        pub fn still_held(&self) -> Result<bool, Error> {
            self.hold.slot.still_held(self.hold.holder)
        }

        /// The fencing token of this hold (see [`Lock::fencing_token`]).
        ///
        /// # Errors
        ///
        /// As [`Lock::fencing_token`].
        pub fn fencing_token(&self) -> Result<u64, Error> {
            self.hold.slot.fencing_token(self.hold.holder)
        }
    };
}

impl Guard {
    hold_methods!();
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("path", &self.path()).finish()
    }
}

/// Holds a lock taken by [`Lock::acquire_async`] until dropped. Unlike
/// [`Guard`] it is `Send`: its holder is a task, not a thread.
#[must_use = "the lock is released when the guard drops"]
pub struct AsyncGuard {
    hold: Hold,
}

impl AsyncGuard {
    /// Polls `fut` as this guard's holder, so that `#[exclusive]` calls
    /// inside it re-enter the lock instead of finding it busy (what the
    /// attribute does for an `async fn`'s body).
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        Scoped::new(self.hold.holder, fut)
    }

    hold_methods!();
}

impl std::fmt::Debug for AsyncGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncGuard")
            .field("path", &self.path())
            .finish()
    }
}

/// The caller's hold, lent to threads it starts: code run through
/// [`Lent::run`] acts as the caller, so an `#[exclusive]` call there
/// re-enters the caller's locks instead of finding them busy (or, with
/// `wait`, waiting for the caller forever), as the branches of a `join!`
/// share an async task's. For threads that end before the hold does:
/// `std::thread::scope`, `rayon::scope`.
///
/// ```
/// # let _dir = lockattr::__private::doc_dir();
/// #[lockattr::exclusive("doc-build")]
/// fn build() -> Result<(), lockattr::Error> {
///     let lent = lockattr::lend();
///     std::thread::scope(|scope| {
///         let steps: Vec<_> = (0..4).map(|_| scope.spawn(|| lent.run(compile))).collect();
///         steps.into_iter().try_for_each(|step| step.join().unwrap())
///     })
/// }
///
/// #[lockattr::exclusive("doc-build")]
/// fn compile() -> Result<(), lockattr::Error> {
///     Ok(()) // re-enters `build`'s hold
/// }
///
/// build()?;
/// # Ok::<(), lockattr::Error>(())
/// ```
#[must_use = "the hold is lent only to code run through `Lent::run`"]
pub fn lend() -> Lent {
    Lent(HolderId::current())
}

/// The caller's hold, lent to other threads; see [`lend`].
#[derive(Clone, Copy, Debug)]
pub struct Lent(HolderId);

impl Lent {
    /// Runs `f` on this thread as the lender.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::holder::acting_as(self.0, f)
    }
}

/// One hold of one or more locks by one holder; dropping it ends the hold
/// (the last-taken lock first).
#[must_use = "the lock is released when the guard drops"]
#[doc(hidden)]
pub struct Hold {
    pub(crate) slot: &'static Slot,
    /// Further locks of `#[exclusive("a", "b")]`, in the order taken; empty
    /// (and unallocated) for one lock.
    pub(crate) more: Vec<&'static Slot>,
    pub(crate) holder: HolderId,
}

impl Hold {
    pub(crate) fn one(slot: &'static Slot, holder: HolderId) -> Hold {
        Hold {
            slot,
            more: Vec::new(),
            holder,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        for slot in self.more.iter().rev() {
            slot.release(self.holder);
        }
        self.slot.release(self.holder);
    }
}
