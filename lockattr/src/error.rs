//! The one error type: busy, or a named failure with its OS error and a hint.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong; [`Error::kind`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Another holder has the lock: another process, another thread, or
    /// another task of this process.
    Busy,
    /// The OS refused to open, create, check or lock the file (missing
    /// directory, permission, read-only file system...): see
    /// [`Error::os_error`].
    Io,
    /// Something other than a regular file stands at the lock file's path: a
    /// symbolic link, FIFO, directory, socket or device.
    NotRegularFile,
    /// Granting the request could deadlock, so it is refused: an exclusive
    /// request nested inside a shared hold of the same lock by the same
    /// holder, or a wait on a lock that this thread holds beneath the wait.
    WouldDeadlock,
    /// This platform or backend cannot answer: who holds a lock without
    /// `/proc/locks`, a fencing token for a lock file.
    Unsupported,
    /// The configuration cannot work: a relative `LOCKATTR_DIR` or `dir`,
    /// a bad run-time lock name, or `LOCKATTR_URL` set in a binary that
    /// cannot honour it; or a question only a holder may ask (a fencing
    /// token) asked by a caller that does not hold the lock.
    Config,
}

/// Who holds a busy lock, as far as it can be found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Holder {
    /// Another thread or task of this process.
    ThisProcess {
        /// This process's pid.
        pid: u32,
    },
    /// Another process, as listed in `/proc/locks`.
    #[non_exhaustive]
    Process {
        /// Its pid.
        pid: u32,
        /// Its command name, from `/proc/PID/comm`, when readable.
        command: Option<String>,
        /// The user it runs as, when readable.
        uid: Option<u32>,
        /// That user's name, from `/etc/passwd`, when listed there.
        user: Option<String>,
    },
    /// A session of the PostgreSQL server (`LOCKATTR_URL`): another host's
    /// lockattr, or another client such as `psql` or a service using sqlx.
    #[non_exhaustive]
    Session {
        /// The holding program's pid on its host, when it is lockattr
        /// (which puts it in the session's `application_name`).
        pid: Option<u32>,
        /// The holding program's host name, likewise.
        host: Option<String>,
        /// The server's process for that session (`pg_backend_pid()`).
        backend_pid: u32,
        /// The client's address as the server sees it.
        address: Option<String>,
        /// The database user.
        user: Option<String>,
        /// The session's `application_name`.
        application: Option<String>,
    },
    /// The lock is busy but its table lists no holder (`/proc/locks`, or
    /// `pg_locks` on PostgreSQL): it is in another pid namespace (a
    /// container), or let go just now.
    Unlisted,
    /// The holder cannot be looked up here: `/proc/locks` is missing or
    /// unreadable (or not Linux), or the query of `pg_locks` failed.
    Unknown,
}

impl Holder {
    /// The holder's pid, when known.
    pub fn pid(&self) -> Option<u32> {
        match *self {
            Holder::ThisProcess { pid } | Holder::Process { pid, .. } => Some(pid),
            Holder::Session { pid, .. } => pid,
            Holder::Unlisted | Holder::Unknown => None,
        }
    }

    // Only where /proc/locks names holders.
    #[cfg_attr(
        not(all(target_os = "linux", not(lockattr_portable))),
        allow(dead_code)
    )]
    pub(crate) fn process(pid: u32, command: Option<String>, uid: Option<u32>) -> Holder {
        Holder::Process {
            pid,
            command,
            uid,
            user: uid.and_then(crate::who::user_name),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::ThisProcess { pid } => {
                write!(f, "another thread or task of this process (pid {pid})")
            }
            Holder::Process {
                pid,
                command,
                uid,
                user,
            } => {
                write!(f, "pid {pid}")?;
                if let Some(command) = command {
                    write!(f, " ({command})")?;
                }
                match (user, uid) {
                    (Some(user), Some(uid)) => write!(f, " of user {user} (uid {uid})"),
                    (None, Some(uid)) => write!(f, " of uid {uid}"),
                    _ => Ok(()),
                }
            }
            Holder::Session {
                pid,
                host,
                backend_pid,
                address,
                user,
                application,
            } => {
                match (pid, host) {
                    (Some(pid), Some(host)) => write!(f, "pid {pid} on host {host} (")?,
                    _ => match application {
                        Some(application) => write!(f, "{application} (")?,
                        None => f.write_str("a client (")?,
                    },
                }
                write!(f, "database session {backend_pid}")?;
                if let Some(user) = user {
                    write!(f, " of user {user}")?;
                }
                if let Some(address) = address {
                    write!(f, " from {address}")?;
                }
                f.write_str(")")
            }
            // Said of a lock file and of a database lock alike.
            Holder::Unlisted => f.write_str(
                "another process that the lock table (/proc/locks, or pg_locks on PostgreSQL) \
                 does not list (in another pid namespace, or it let go just now)",
            ),
            Holder::Unknown => f.write_str(
                "another process (unknown: the lock table could not be read, or there is none \
                 on this system)",
            ),
        }
    }
}

/// The error of an acquisition: busy, or a failure setting up the lock.
///
/// `Display` names the lock and its file, and for failures the OS error and
/// what to do about it. The OS error is part of that sentence, so
/// [`source`](std::error::Error::source) returns `None` (a chain printer
/// such as anyhow's would otherwise say it twice); [`Error::os_error`]
/// gives it. [`Error::is_busy`] tells busy from every failure.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("lockattr-doc-error-{}", std::process::id()));
/// let dir: &'static str = Box::leak(dir.into_os_string().into_string().unwrap().into_boxed_str());
/// std::fs::create_dir_all(dir)?;
/// # struct Remove(&'static str);
/// # impl Drop for Remove { fn drop(&mut self) { let _ = std::fs::remove_dir_all(self.0); } }
/// # let _remove = Remove(dir);
/// let lock = lockattr::Lock::new(lockattr::LockName::new("doc-error")).dir(dir);
/// let _held = lock.acquire()?;
/// // Another thread is another holder: it finds the lock busy.
/// let err = std::thread::spawn(move || lock.acquire().map(drop)).join().unwrap().unwrap_err();
/// assert!(err.is_busy());
/// assert!(err.to_string().contains("doc-error"));
/// // `?` turns it into `std::io::Error`, `anyhow::Error` or `Box<dyn Error>`.
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
/// # Ok(())
/// # }
/// ```
pub struct Error(Box<Inner>);

/// Boxed, so that a `Result` of lockattr costs a pointer, not a message.
#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    /// The lock's name; `None` for a lock given by its path, and for a
    /// configuration problem that concerns no particular lock.
    name: Option<String>,
    /// Where the lock is; `None` when the error concerns no particular one.
    at: Option<Location>,
    detail: Detail,
}

/// Where a lock lives: a file, or a key of a PostgreSQL server.
#[derive(Clone)]
pub(crate) enum Location {
    File(PathBuf),
    Advisory { server: String, key: i64 },
}

#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum LocationRef<'a> {
    File(&'a Path),
    Advisory { server: &'a str, key: i64 },
}

enum Detail {
    Busy(Holder),
    Os {
        action: &'static str,
        source: io::Error,
        hint: Option<String>,
    },
    Text(String),
}

/// Every `Os` detail is made from an errno, so it can be made again.
impl Clone for Detail {
    fn clone(&self) -> Detail {
        match self {
            Detail::Busy(holder) => Detail::Busy(holder.clone()),
            Detail::Os {
                action,
                source,
                hint,
            } => Detail::Os {
                action,
                source: match source.raw_os_error() {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
                hint: hint.clone(),
            },
            Detail::Text(text) => Detail::Text(text.clone()),
        }
    }
}

/// What an error is about: a lock's name (or `None` for `path = ...`
/// locks) and where it lives.
#[derive(Clone, Copy)]
pub(crate) struct About<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) at: Option<LocationRef<'a>>,
}

impl<'a> About<'a> {
    pub(crate) fn file(name: Option<&'a str>, path: &'a Path) -> About<'a> {
        About {
            name,
            at: Some(LocationRef::File(path)),
        }
    }

    pub(crate) fn named(name: Option<&'a str>) -> About<'a> {
        About { name, at: None }
    }

    pub(crate) const NOTHING: About<'static> = About {
        name: None,
        at: None,
    };
}

impl Clone for Error {
    fn clone(&self) -> Error {
        Error(self.0.clone())
    }
}

impl Error {
    fn new(kind: ErrorKind, about: About<'_>, detail: Detail) -> Error {
        Error(Box::new(Inner {
            kind,
            name: about.name.map(str::to_owned),
            at: about.at.map(|at| match at {
                LocationRef::File(path) => Location::File(path.to_owned()),
                LocationRef::Advisory { server, key } => Location::Advisory {
                    server: server.to_owned(),
                    key,
                },
            }),
            detail,
        }))
    }

    pub(crate) fn busy(about: About<'_>, holder: Holder) -> Error {
        let err = Error::new(ErrorKind::Busy, about, Detail::Busy(holder));
        crate::exit::note_busy(&err);
        err
    }

    /// `action` completes "cannot ... lock file": "open", "create", "lock",
    /// "check".
    pub(crate) fn os(
        about: About<'_>,
        action: &'static str,
        errno: rustix::io::Errno,
        hint: Option<String>,
    ) -> Error {
        let source = io::Error::from_raw_os_error(errno.raw_os_error());
        Error::new(
            ErrorKind::Io,
            about,
            Detail::Os {
                action,
                source,
                hint,
            },
        )
    }

    pub(crate) fn other(kind: ErrorKind, about: About<'_>, text: String) -> Error {
        Error::new(kind, about, Detail::Text(text))
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether another holder has the lock. Every other error is a failure
    /// to set the lock up, never "busy".
    pub fn is_busy(&self) -> bool {
        self.0.kind == ErrorKind::Busy
    }

    /// The lock's name; `None` for a lock given by its path
    /// (`path = "..."`, [`Lock::at_path`](crate::Lock::at_path)) and for a
    /// configuration problem that concerns no particular lock.
    pub fn lock_name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The lock file; `None` for a PostgreSQL lock, and when the error
    /// concerns no particular lock.
    pub fn path(&self) -> Option<&Path> {
        match &self.0.at {
            Some(Location::File(path)) => Some(path),
            _ => None,
        }
    }

    /// The PostgreSQL advisory key of a lock taken on a server
    /// (`LOCKATTR_URL`); `None` for a lock file.
    pub fn advisory_key(&self) -> Option<i64> {
        match &self.0.at {
            Some(Location::Advisory { key, .. }) => Some(*key),
            _ => None,
        }
    }

    /// Who holds the lock, when busy.
    pub fn holder(&self) -> Option<&Holder> {
        match &self.0.detail {
            Detail::Busy(holder) => Some(holder),
            _ => None,
        }
    }

    /// The OS error behind an [`ErrorKind::Io`] failure.
    pub fn os_error(&self) -> Option<&io::Error> {
        match &self.0.detail {
            Detail::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lock = Lock(self);
        match &self.0.detail {
            Detail::Busy(holder) => write!(f, "{lock} is busy: held by {holder}"),
            Detail::Os {
                action,
                source,
                hint,
            } => {
                match (&self.0.name, &self.0.at) {
                    (Some(name), Some(Location::File(path))) => write!(
                        f,
                        "cannot {action} lock file {} for lock \"{name}\": {source}",
                        path.display()
                    )?,
                    _ => write!(f, "{lock}: cannot {action} it: {source}")?,
                }
                match hint {
                    Some(hint) => write!(f, "; {hint}"),
                    None => Ok(()),
                }
            }
            Detail::Text(text) if self.0.name.is_none() && self.0.at.is_none() => f.write_str(text),
            Detail::Text(text) => write!(f, "{lock}: {text}"),
        }
    }
}

/// How a message names the lock: `lock "x" (/run/lock/x.lock)`, `lock file
/// /abs/x.lock`, `lock "x" (PostgreSQL advisory key 42 on db:5432/locks)`.
struct Lock<'a>(&'a Error);

impl fmt::Display for Lock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0.0.name, &self.0.0.at) {
            (Some(name), Some(at)) => write!(f, "lock \"{name}\" ({at})"),
            (Some(name), None) => write!(f, "lock \"{name}\""),
            (None, Some(Location::File(path))) => write!(f, "lock file {}", path.display()),
            (None, Some(at)) => write!(f, "lock ({at})"),
            (None, None) => f.write_str("lock"),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Advisory { server, key } => {
                write!(f, "PostgreSQL advisory key {key} on {server}")
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `fn main() -> Result<(), lockattr::Error>` prints Debug: make it
        // the readable sentence, as anyhow does.
        write!(f, "{self} [{:?}]", self.0.kind)
    }
}

/// The OS error is in `Display` already: no `source`, so that it is said
/// once (the Rust API guidelines' rule for error chains).
impl std::error::Error for Error {}

/// Busy becomes [`io::ErrorKind::WouldBlock`]; a failure keeps its OS
/// error's kind. The message is the `Display` of the lockattr error.
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match (&err.0.detail, err.0.kind) {
            (_, ErrorKind::Busy) => io::ErrorKind::WouldBlock,
            (Detail::Os { source, .. }, _) => source.kind(),
            (_, ErrorKind::NotRegularFile) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
