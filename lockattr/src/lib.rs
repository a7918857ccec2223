//! `#[exclusive("build-deploy")]` makes a function run only while it holds a
//! cross-process lock, so the commands of a tool (a CI/CD helper, an ops CLI,
//! a cron job) never overlap on one host, whoever starts them: a pipeline or
//! a person, root or an ordinary user. When another holder has the lock, the
//! function returns at once in the way you chose, instead of overlapping,
//! hanging or panicking. The lock is flock(2) on `DIR/NAME.lock`, so shell
//! scripts share it through `flock(1)`.
//!
//! ```
//! # let _dir = lockattr::__private::doc_dir();
//! use lockattr::{exclusive, LockName};
//!
//! // Declared once: a typo in one of the annotations does not compile.
//! const BUILD_DEPLOY: LockName = LockName::new("build-deploy");
//!
//! #[exclusive(BUILD_DEPLOY)]
//! fn build() -> anyhow::Result<()> {
//!     // compile: when a deploy runs, this returns Err (busy) instead
//!     Ok(())
//! }
//!
//! #[exclusive(BUILD_DEPLOY)]
//! fn deploy() -> anyhow::Result<&'static str> {
//!     build()?; // nested on the same thread: re-enters, never deadlocks
//!     // tag, package, ship: when a build runs, this returns Err (busy)
//!     Ok("shipped")
//! }
//!
//! #[exclusive(BUILD_DEPLOY, wait = "5m")]
//! fn deploy_when_free() -> anyhow::Result<&'static str> {
//!     deploy() // waits up to five minutes for a running build
//! }
//!
//! assert_eq!(deploy_when_free()?, "shipped");
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! The attribute's page, [`#[exclusive]`](macro@exclusive), is the
//! reference: its syntax, names, every option, what a function returns when
//! busy or when the lock cannot be set up, the lock file, and the rules
//! inside one process. In short:
//!
//! - **Busy is not failure.** Without `on_busy`, the return type decides: a
//!   `()` function prints one line on stderr and returns; a
//!   `Result<T, E>` function with `E: From<lockattr::Error>` returns `Err`,
//!   and [`Error::is_busy`] tells busy from a failure to set the lock up (a
//!   missing directory, a permission), which is never reported as busy. See
//!   [busy and failure](macro@exclusive#busy-and-failure).
//! - **Options**: `on_busy = EXPR` or `on_busy = |err| ...`, `wait`,
//!   `wait = "30s"`, `shared`, `dir = "/abs/dir"`, `path = "/abs/file.lock"`,
//!   `crate = "path"` ([options](macro@exclusive#options)). Names can come
//!   from the arguments, `#[exclusive("deploy-{env}")]`, and several names
//!   are taken in one global order ([names](macro@exclusive#names)).
//! - **The lock file** is `DIR/NAME.lock` in `dir`, the directory given to
//!   [`set_default_dir`], `$LOCKATTR_DIR`, `/run/lock` or `/tmp`; created
//!   mode 0644 whatever the umask, opened read-only (so root can lock a file
//!   another user created, even under `fs.protected_regular`), never through
//!   a symlink, never deleted ([the lock file](macro@exclusive#the-lock-file)).
//! - **Shell scripts**: `lockattr::exit_code(run())` at the end of `main`
//!   exits [`EXIT_BUSY`] (75) when the lock was busy and 1 when it failed
//!   ([what a shell sees](macro@exclusive#what-a-shell-sees));
//!   [`lock_path`] gives a script the file to hand to `flock(1)`.
//! - **Inside one process**, threads and async tasks exclude each other like
//!   processes, and a nested call re-enters
//!   ([inside one process](macro@exclusive#inside-one-process)); `#[test]`
//!   functions wait for the lock instead of passing without running.
//! - **By hand**: [`Lock`] with [`Lock::acquire`] or [`Lock::acquire_async`]
//!   is what the attribute expands to; [`Lock::holders`] says who holds a
//!   lock without taking it, [`lend`] lends a hold to scoped threads, and
//!   [`set_messages`] sends lockattr's own lines (busy, waiting, lost)
//!   elsewhere than stderr.
//! - **Platforms**: Linux is the reference; macOS and the BSDs build and
//!   work without the Linux-only extras (a busy lock's holder is then
//!   "unknown"); other targets get one compile error.
//!
//! # Many hosts
//!
//! Built with the `postgres` feature, a process whose `LOCKATTR_URL` (read
//! once per process) is `postgres://...` takes PostgreSQL session advisory
//! locks instead of files, so runners on different machines exclude each
//! other through one server, with the same attribute, options and outcomes;
//! the README's "Many hosts" says how, and what to watch for. A holder cut
//! off from the server is told (a warning on stderr; [`Guard::still_held`]
//! says false) within about 8 s, before the server lets another holder in,
//! 14 to 16 s after the cut; [`Guard::fencing_token`] lets the protected
//! system refuse a holder that has not noticed yet. When `LOCKATTR_URL` is
//! set and this build cannot honour it, every lock is an error rather than
//! a silent fall back to a local file.
//!
//! # Why flock
//!
//! The Python recipe this crate grew from weighed a TCP port bound on
//! loopback and a unix socket before it chose flock(2), and a pid file is
//! the other classic. A flock comes free when its holder dies, even by
//! SIGKILL (within about 0.3 ms on the benchmark machine, as fast as a
//! bound port), takes any file name, reaches every user and container that
//! can open the file, and is understood by `flock(1)` and every language; a
//! waiter sleeps in the kernel instead of polling, and readers can share
//! it. A port is a number to reserve and, like an abstract socket (Linux
//! only), ends at a network namespace; a pid file, like the recipe's socket
//! file, stays behind when its holder is killed. The README's "Why flock"
//! has the comparison and `BENCHMARKS.md` the figures.
//!
//! # Caveats
//!
//! flock(2) is advisory: it stops only programs that take the lock too. It
//! reaches one host (on NFS it is at best emulated); across machines, lock
//! on a PostgreSQL server. Anyone who can open the lock file can hold the
//! lock; where that matters, use a `dir` that only the right users can
//! write. Callers that resolve different directories (one with
//! `LOCKATTR_DIR` set, one without; a service with a private `/tmp`) do not
//! exclude each other: pin the directory with `dir` or [`set_default_dir`].
//! A lock file deleted while held cannot protect its holder, which says so
//! loudly when it lets go.

#![deny(missing_docs)]

// flock(2), /proc and the rest are Unix; say so once rather than with a
// page of unrelated errors.
#[cfg(not(unix))]
compile_error!(
    "lockattr supports Unix systems only (it locks files with flock(2)): Linux is the \
     reference platform; macOS and the BSDs build without the Linux-only extras"
);

#[cfg(unix)]
mod backend;
#[cfg(unix)]
mod error;
#[cfg(unix)]
mod exit;
#[cfg(unix)]
mod file;
#[cfg(unix)]
mod holder;
#[cfg(unix)]
mod lock;
#[cfg(unix)]
mod messages;
mod name;
#[cfg(unix)]
mod outcome;
#[cfg(all(unix, feature = "postgres"))]
mod pg;
#[cfg(unix)]
mod place;
#[cfg(unix)]
mod private;
#[cfg(unix)]
mod process;
#[cfg(unix)]
mod registry;
#[cfg(unix)]
mod template;
#[cfg(unix)]
mod wait;
#[cfg(unix)]
mod who;

/// What the attribute's expansion calls. Not a stable API: it changes with
/// `lockattr-macros`, which is pinned to this exact version.
#[cfg(unix)]
#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}

#[cfg(unix)]
pub use error::{Error, ErrorKind, Holder};
#[cfg(unix)]
pub use exit::{EXIT_BUSY, exit_code};
#[cfg(unix)]
pub use lock::{AsyncGuard, Guard, Hold, Lent, Lock, close_idle, lend, lock_path};
#[doc = include_str!("exclusive.md")]
#[doc(inline)]
pub use lockattr_macros::exclusive;
#[cfg(unix)]
pub use messages::{Message, Messages, set_messages};
pub use name::{LockName, NameError};
#[cfg(all(unix, feature = "postgres"))]
pub use pg::advisory_key;
#[cfg(unix)]
pub use place::set_default_dir;
