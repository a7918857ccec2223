//! `#[exclusive]` keeps commands of a tool from running at the same time,
//! across processes and users of one host.
//!
//! ```
//! # let _dir = lockattr::__private::doc_dir();
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
//! On a `#[test]` or `#[tokio::test]` function without `wait`,
//! `wait = "DUR"` or `on_busy`, the attribute waits for the lock instead, in
//! either attribute order: a test never passes without running, and tests
//! that share a resource take turns across test binaries and processes.
//!
//! The attribute is sugar for [`Lock::acquire`]; `build` above behaves as:
//!
//! ```
//! # let _dir = lockattr::__private::doc_dir();
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
//! # Names from arguments
//!
//! `#[exclusive("deploy-{env}")]` takes the lock of the value of the
//! parameter `env` (`{self.field}` for a field of the receiver): deploys to
//! two environments run side by side, two to one exclude each other. A
//! value is escaped, never trusted: every byte other than an ASCII letter
//! or digit becomes `_` and two upper-case hex digits, an empty value is a
//! lone `_`; so a value cannot leave the lock directory or make a hidden
//! name, and two values never share a file (placeholders must be apart by
//! a `-` or `.`, which no escaped value contains). Longer than 200 bytes is
//! an error. [`LockName::from_template`] is the same mapping at run time.
//!
//! ```
//! # let _dir = lockattr::__private::doc_dir();
//! use lockattr::{LockName, exclusive};
//!
//! #[exclusive("doc-deploy-{env}")]
//! fn deploy(env: &str) -> Result<&str, lockattr::Error> {
//!     Ok(env)
//! }
//!
//! assert_eq!(deploy("prod/eu")?, "prod/eu");
//! let name = LockName::from_template("doc-deploy-{env}", &[("env", &"prod/eu")])?;
//! assert_eq!(name.as_str(), "doc-deploy-prod_2Feu");
//! # Ok::<(), lockattr::Error>(())
//! ```
//!
//! Several names, `#[exclusive("artifacts", "deploy-{env}")]`, are all
//! taken, always in the order of their files' paths (or database keys), so
//! two functions that name them in different orders cannot deadlock.
//!
//! # Files
//!
//! The lock file is `DIR/NAME.lock`. DIR is the `dir` option if given; else
//! `$LOCKATTR_DIR` if set and not empty (read once per process); else
//! `/run/lock` if it is a world-writable sticky directory; else `/tmp`.
//! [`lock_path`] tells a shell script which file to hand to `flock(1)`.
//!
//! The file is created with mode 0644 whatever the umask (and no other user
//! ever sees it with a narrower one), opened read-only (so
//! `fs.protected_regular` does not stop root from opening a file another
//! user created), never through a symlink, only if it is a regular file,
//! and never deleted. After locking, the path must still name the locked
//! file, else the lock starts over: that protects a caller that opened the
//! file just before it was replaced. A file deleted or replaced *while
//! held* cannot be protected by flock: the next caller locks a new file and
//! runs beside the holder. The holder notices when it lets go and prints a
//! loud warning; lock files must never be removed (`rm /run/lock/*.lock`,
//! `/tmp` cleaners).
//!
//! [`set_default_dir`] pins a program's default directory, so that a caller
//! with `LOCKATTR_DIR` set and one without (or a service with a private
//! `/tmp`) cannot end up locking different files. [`close_idle`] closes the
//! descriptors kept open between holds.
//!
//! # Shell scripts
//!
//! `lockattr::exit_code(run())` at the end of `main` exits 0 when the
//! function ran, [`EXIT_BUSY`] (75, `EX_TEMPFAIL`) when its lock was busy
//! and 1 when it failed, so `tool build && tool deploy` stops after a
//! skipped build. [`lock_path`] gives a script the lock file for `flock(1)`.
//!
//! # Many hosts
//!
//! Built with the `postgres` feature, a process whose `LOCKATTR_URL` (read
//! once per process) is `postgres://...` takes PostgreSQL session advisory
//! locks instead of files, so runners on different machines exclude each
//! other through one server; the README's "Many hosts" says how, and what
//! to watch for. A holder cut off from the server is told (a warning on
//! stderr; [`Guard::still_held`] says false) within about 8 s, before the
//! server lets another holder in, 14 to 16 s after the cut;
//! [`Guard::fencing_token`] lets the protected system refuse a holder that
//! has not noticed yet. When `LOCKATTR_URL` is set and this build cannot
//! honour it, every lock is an error rather than a silent fall back to a
//! local file.
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
#[doc(inline)]
pub use lockattr_macros::exclusive;
#[cfg(unix)]
pub use messages::{Message, Messages, set_messages};
pub use name::{LockName, NameError};
#[cfg(all(unix, feature = "postgres"))]
pub use pg::advisory_key;
#[cfg(unix)]
pub use place::set_default_dir;
