//! `#[exclusive]` keeps commands of a tool from running at the same time,
//! across processes and users of one host.
//!
//! ```
//! use lockattr::exclusive;
//!
//! #[exclusive("doc-build-deploy")]
//! fn build() -> Result<(), lockattr::Error> {
//!     // compile; a `deploy` in another process is refused meanwhile
//!     Ok(())
//! }
//!
//! #[exclusive("doc-build-deploy")]
//! fn deploy() -> Result<&'static str, lockattr::Error> {
//!     build()?; // nested: this thread holds the lock already, so it re-enters
//!     Ok("shipped")
//! }
//!
//! assert_eq!(deploy()?, "shipped");
//! # Ok::<(), lockattr::Error>(())
//! ```
//!
//! The function runs only while it holds an flock(2) lock on
//! `DIR/NAME.lock`. When another holder has it, the function returns at once
//! with the busy outcome: for `()` one line on stderr; for `Result<T, E>`
//! with `E: From<lockattr::Error>`, `Err`; or whatever `on_busy = EXPR`
//! says. A failure to set the lock up (missing directory, permission) is an
//! error, never "busy".
//!
//! The attribute is sugar for [`Lock::acquire`]; `build` above behaves as:
//!
//! ```
//! use lockattr::{Lock, LockName};
//!
//! const BUILD_DEPLOY: Lock = Lock::new(LockName::new("doc-build-deploy"));
//!
//! fn build() -> Result<(), lockattr::Error> {
//!     let _guard = BUILD_DEPLOY.acquire()?;
//!     Ok(())
//! }
//! # build()?;
//! # Ok::<(), lockattr::Error>(())
//! ```
//!
//! # Options
//!
//! ```text
//! #[exclusive(NAME [, option]...)]
//! #[exclusive(path = "/abs/file.lock" [, option]...)]
//! ```
//!
//! NAME is a string literal or a `const` made with [`LockName::new`]. The
//! options are `on_busy = EXPR`, `wait`, `wait = "DUR"` (`"250ms"`, `"30s"`,
//! `"5m"`, `"1h"`), `shared`, `dir = "/abs/dir"` and `crate = "path"`; see
//! the README for each.
//!
//! # Files
//!
//! The lock file is `DIR/NAME.lock`. DIR is the `dir` option if given; else
//! `$LOCKATTR_DIR` if set and not empty (read once per process); else
//! `/run/lock` if it is a world-writable sticky directory; else `/tmp`.
//! [`lock_path`] tells a shell script which file to hand to `flock(1)`.
//!
//! The file is created with mode 0644 whatever the umask, opened read-only
//! (so `fs.protected_regular` does not stop root from opening a file another
//! user created), never through a symlink, only if it is a regular file, and
//! never deleted. After locking, the path must still name the locked file,
//! else the lock starts over.
//!
//! `LOCKATTR_URL` (read once per process) is reserved for a network backend
//! this release does not have: when it is set, every lock is an error rather
//! than a silent fall back to a local file.
//!
//! # Inside one process
//!
//! Threads exclude each other as processes do; a nested call on a thread
//! that holds the lock re-enters. In async code the holder is the task: the
//! outermost `#[exclusive]` future and everything polled inside it (nested
//! `#[exclusive]` calls, branches of a `join!`) share its hold, while a
//! spawned task is another holder. A future is part of the task in which it
//! is first polled. A guard from [`Lock::acquire`] belongs to its thread and
//! is not `Send`. A sync hold and an `#[exclusive]` async fn driven by
//! `block_on` beneath it are two holders: it reports busy, and a wait there
//! is refused ([`ErrorKind::WouldDeadlock`]) rather than hang. After
//! `fork()` the child is another holder.

#![deny(missing_docs)]

mod error;
mod file;
mod holder;
mod name;
mod outcome;
mod place;
mod private;
mod process;
mod registry;
mod wait;

/// What the attribute's expansion calls. Not a stable API: it changes with
/// `lockattr-macros`, which is pinned to this exact version.
#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}

pub use error::{Error, ErrorKind, Holder};
#[doc(inline)]
pub use lockattr_macros::exclusive;
pub use name::{LockName, NameError};
pub use place::set_default_dir;

use file::LockMode;
use holder::HolderId;
use place::Place;
use registry::Slot;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wait::Wait;

/// A lock and how to take it: what `#[exclusive(...)]` expands to.
///
/// Every builder method is `const`, so a lock can be declared once:
///
/// ```
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
    place: Place,
    mode: LockMode,
    wait: Wait,
}

impl Lock {
    /// An exclusive lock on `NAME.lock` in the default directory that does
    /// not wait.
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
    pub const fn at_path(path: &'static str) -> Lock {
        Lock {
            place: Place::Path(path),
            mode: LockMode::Exclusive,
            wait: Wait::No,
        }
    }

    /// Puts `NAME.lock` in `dir`, an absolute path, instead of the default
    /// directory. No effect on a lock made with [`Lock::at_path`].
    pub const fn dir(mut self, dir: &'static str) -> Lock {
        if let Place::Named { name, .. } = self.place {
            self.place = Place::Named {
                name,
                dir: Some(dir),
            };
        }
        self
    }

    /// Takes the lock shared: shared holders run together; an exclusive
    /// holder excludes everyone.
    pub const fn shared(mut self) -> Lock {
        self.mode = LockMode::Shared;
        self
    }

    /// Waits until the lock is free instead of returning busy.
    pub const fn wait(mut self) -> Lock {
        self.wait = Wait::Forever;
        self
    }

    /// Waits at most `limit`, then returns busy.
    pub const fn wait_for(mut self, limit: Duration) -> Lock {
        self.wait = Wait::For(limit);
        self
    }

    /// The lock file.
    pub fn path(&self) -> Result<PathBuf, Error> {
        self.place.resolve()
    }

    /// Takes the lock for this thread, or for the `#[exclusive]` task being
    /// polled, waiting as the lock says.
    pub fn acquire(&self) -> Result<Guard, Error> {
        let hold = self.take(self.slot()?, HolderId::current())?;
        Ok(Guard {
            hold,
            _thread: PhantomData,
        })
    }

    /// The registry's slot for this lock's file, unless the configuration
    /// forbids local locks.
    fn slot(&self) -> Result<&'static Slot, Error> {
        let path = self.path()?;
        if let Some(refusal) = place::url_refusal(self.place.label(), &path) {
            return Err(refusal);
        }
        Ok(registry::slot(&path))
    }

    fn take(&self, slot: &'static Slot, holder: HolderId) -> Result<Hold, Error> {
        let label = self.place.label();
        wait::acquire_blocking(slot, label, self.mode, self.wait, holder)?;
        Ok(Hold { slot, holder })
    }
}

/// The lock file that `#[exclusive(NAME)]` uses in this process, for
/// scripts that share the lock through `flock(1)`:
///
/// ```
/// let path = lockattr::lock_path("build-deploy")?;
/// assert!(path.ends_with("build-deploy.lock"));
/// // sh: flock -n "$(mytool lock-path)" make
/// # Ok::<(), lockattr::Error>(())
/// ```
pub fn lock_path(name: &str) -> Result<PathBuf, Error> {
    if let Err(rule) = name::check(name) {
        let text = format!("{rule}, as in `build-deploy`");
        return Err(Error::other(ErrorKind::Config, name, Path::new(""), text));
    }
    let mut path = place::default_dir_path()?.join(name);
    path.as_mut_os_string().push(".lock");
    Ok(path)
}

/// Holds a lock until dropped. It belongs to the thread that took it, so it
/// is not `Send`: moving it to another thread would let the first thread
/// re-enter while the second still works.
#[must_use = "the lock is released when the guard drops"]
pub struct Guard {
    hold: Hold,
    _thread: PhantomData<*const ()>,
}

impl Guard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        self.hold.slot.path()
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("path", &self.path()).finish()
    }
}

/// One hold of a lock by one holder; dropping it ends the hold.
#[must_use = "the lock is released when the guard drops"]
#[doc(hidden)]
pub struct Hold {
    slot: &'static Slot,
    holder: HolderId,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.slot.release(self.holder);
    }
}
