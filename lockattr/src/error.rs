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
    /// The configuration cannot work: a relative `LOCKATTR_DIR` or `dir`, or
    /// `LOCKATTR_URL` set in a binary that cannot honour it.
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
    Process {
        /// Its pid.
        pid: u32,
        /// Its command name, from `/proc/PID/comm`, when readable.
        command: Option<String>,
    },
    /// The kernel reported the lock busy, but no holder could be found
    /// (no `/proc/locks`, or the holder is in another pid namespace).
    Unknown,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::ThisProcess { pid } => {
                write!(f, "another thread or task of this process (pid {pid})")
            }
            Holder::Process {
                pid,
                command: Some(command),
            } => write!(f, "pid {pid} ({command})"),
            Holder::Process { pid, command: None } => write!(f, "pid {pid}"),
            Holder::Unknown => {
                f.write_str("another process (its pid is not listed in /proc/locks)")
            }
        }
    }
}

/// The error of an acquisition: busy, or a failure setting up the lock.
///
/// `Display` names the lock and its file, and for failures the OS error and
/// what to do about it. [`Error::is_busy`] tells busy from every failure.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("lockattr-doc-error-{}", std::process::id()));
/// let dir: &'static str = Box::leak(dir.into_os_string().into_string().unwrap().into_boxed_str());
/// std::fs::create_dir_all(dir)?;
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
pub struct Error {
    kind: ErrorKind,
    lock: String,
    path: PathBuf,
    detail: Detail,
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

impl Error {
    pub(crate) fn busy(lock: &str, path: &Path, holder: Holder) -> Error {
        Error {
            kind: ErrorKind::Busy,
            lock: lock.to_owned(),
            path: path.to_owned(),
            detail: Detail::Busy(holder),
        }
    }

    /// `action` completes "cannot ... lock file": "open", "create", "lock",
    /// "check".
    pub(crate) fn os(
        lock: &str,
        path: &Path,
        action: &'static str,
        errno: rustix::io::Errno,
        hint: Option<String>,
    ) -> Error {
        Error {
            kind: ErrorKind::Io,
            lock: lock.to_owned(),
            path: path.to_owned(),
            detail: Detail::Os {
                action,
                source: io::Error::from_raw_os_error(errno.raw_os_error()),
                hint,
            },
        }
    }

    pub(crate) fn other(kind: ErrorKind, lock: &str, path: &Path, text: String) -> Error {
        Error {
            kind,
            lock: lock.to_owned(),
            path: path.to_owned(),
            detail: Detail::Text(text),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether another holder has the lock. Every other error is a failure
    /// to set the lock up, never "busy".
    pub fn is_busy(&self) -> bool {
        self.kind == ErrorKind::Busy
    }

    /// The lock's name (or, for `path = ...`, its path).
    pub fn lock_name(&self) -> &str {
        &self.lock
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock, when busy.
    pub fn holder(&self) -> Option<&Holder> {
        match &self.detail {
            Detail::Busy(holder) => Some(holder),
            _ => None,
        }
    }

    /// The OS error behind an [`ErrorKind::Io`] failure.
    pub fn os_error(&self) -> Option<&io::Error> {
        match &self.detail {
            Detail::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lock, path) = (&self.lock, self.path.display());
        match &self.detail {
            Detail::Busy(holder) => {
                write!(f, "lock \"{lock}\" is busy: {path} is held by {holder}")
            }
            Detail::Os {
                action,
                source,
                hint,
            } => {
                write!(
                    f,
                    "cannot {action} lock file {path} for lock \"{lock}\": {source}"
                )?;
                match hint {
                    Some(hint) => write!(f, "; {hint}"),
                    None => Ok(()),
                }
            }
            Detail::Text(text) if self.path.as_os_str().is_empty() => {
                write!(f, "lock \"{lock}\": {text}")
            }
            Detail::Text(text) => write!(f, "lock \"{lock}\" ({path}): {text}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `fn main() -> Result<(), lockattr::Error>` prints Debug: make it
        // the readable sentence, as anyhow does.
        write!(f, "{self} [{:?}]", self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.detail {
            Detail::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Busy becomes [`io::ErrorKind::WouldBlock`]; a failure keeps its OS
/// error's kind. The message is the `Display` of the lockattr error.
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match (&err.detail, err.kind) {
            (_, ErrorKind::Busy) => io::ErrorKind::WouldBlock,
            (Detail::Os { source, .. }, _) => source.kind(),
            (_, ErrorKind::NotRegularFile) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
