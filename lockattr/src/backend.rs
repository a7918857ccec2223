//! The seam between the per-process rules (`registry.rs`) and what a lock
//! really is: flock(2) on a local file, or a PostgreSQL session advisory
//! lock (feature `postgres`, chosen by `LOCKATTR_URL`). A closed enum, not a
//! trait object: the set is known at compile time, one variant is behind a
//! feature, and the uncontended file path stays free of allocations.
//!
//! Every backend offers the same few operations: open (once, kept between
//! holds), try to lock, block until locked (on a thread of its own or the
//! caller's), unlock, confirm after locking that the lock is the one the
//! caller means, notice at release that it was lost, name who holds it, and
//! after `fork()` let go of what the child inherited without touching it.

use crate::error::{About, Error, ErrorKind, Holder, LocationRef};
use crate::file::{self, Ctx, Identity, LockMode, Try};
#[cfg(feature = "postgres")]
use crate::pg;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// Which backend this process uses, decided once from `LOCKATTR_URL`.
pub(crate) enum Backend {
    File,
    #[cfg(feature = "postgres")]
    Postgres(Box<pg::Server>),
}

/// The process's backend. `LOCKATTR_URL` is read once; when it is set and
/// this build cannot honour it, every lock is an error: a silent fall back
/// to local files would let two hosts overlap.
pub(crate) fn current(about: About<'_>) -> Result<&'static Backend, Error> {
    static BACKEND: OnceLock<Result<Backend, String>> = OnceLock::new();
    let chosen = BACKEND.get_or_init(|| {
        let url = std::env::var_os("LOCKATTR_URL").filter(|url| !url.is_empty());
        match url {
            None => Ok(Backend::File),
            Some(url) => select(&url.to_string_lossy()),
        }
    });
    chosen
        .as_ref()
        .map_err(|text| Error::other(ErrorKind::Config, about, text.clone()))
}

/// The backend for a `LOCKATTR_URL`, or why there is none.
fn select(url: &str) -> Result<Backend, String> {
    // Name only the scheme: the rest may hold a password.
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        #[cfg(feature = "postgres")]
        Some("postgres" | "postgresql") => {
            pg::Server::from_url(url).map(|server| Backend::Postgres(Box::new(server)))
        }
        #[cfg(not(feature = "postgres"))]
        Some(scheme @ ("postgres" | "postgresql")) => Err(format!(
            "LOCKATTR_URL is set (scheme `{scheme}`), but this program was built without \
             lockattr's `postgres` feature; build it with `lockattr = {{ features = \
             [\"postgres\"] }}`, or unset LOCKATTR_URL to use local lock files"
        )),
        Some(scheme) => Err(format!(
            "LOCKATTR_URL has the scheme `{scheme}`, which lockattr does not know; use \
             `postgres://...`, or unset LOCKATTR_URL to use local lock files"
        )),
        None => Err(
            "LOCKATTR_URL is set but is not a URL (`postgres://user@host/db`); unset it to use \
             local lock files"
                .to_owned(),
        ),
    }
}

/// What a slot locks. Fixed for the slot's life.
pub(crate) enum Target {
    File {
        path: PathBuf,
        /// `path` as the system calls take it, made once.
        c_path: CString,
    },
    #[cfg(feature = "postgres")]
    Advisory {
        server: &'static pg::Server,
        key: i64,
    },
}

/// A target opened for locking: kept between holds, taken out of the slot
/// while a thread waits with it.
pub(crate) enum Handle {
    File(file::LockFile),
    #[cfg(feature = "postgres")]
    Advisory(pg::Session),
}

/// What the slot remembers about a wait in progress: the file it is on
/// (after a replacement the path names another one, so its holder is looked
/// up by this identity) and how to cancel it, where the backend can.
pub(crate) struct InFlight {
    pub(crate) identity: Option<Identity>,
    #[cfg(feature = "postgres")]
    pub(crate) cancel: Option<pg::Cancel>,
}

/// How a lock was lost while held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Nothing has the file's name: `rm`, or `mv` of the file elsewhere.
    Deleted,
    /// Another file has its name: `mv` or `cp` over it.
    Replaced,
    /// The database session ended: the server let go of the lock.
    #[cfg(feature = "postgres")]
    Session,
}

impl Lost {
    /// Says loudly that the lock was lost while held (once); `kept` is what
    /// [`Handle::after_loss`] kept.
    pub(crate) fn report(self, target: &Target, kept: Option<Handle>, name: Option<&str>) {
        match kept {
            #[cfg(feature = "postgres")]
            Some(Handle::Advisory(session)) => session.report_loss(),
            _ => crate::messages::lost(name, target.location(), self),
        }
    }
}

impl Target {
    pub(crate) fn file(path: &Path) -> Target {
        Target::File {
            path: path.to_owned(),
            // A path from `Place::resolve` has no NUL: names and the macro's
            // options refuse it, and so does `Lock::dir` at resolve time.
            c_path: CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default(),
        }
    }

    pub(crate) fn order(&self, other: &Target) -> std::cmp::Ordering {
        match (self, other) {
            (Target::File { path: a, .. }, Target::File { path: b, .. }) => a.cmp(b),
            #[cfg(feature = "postgres")]
            (Target::Advisory { key: a, .. }, Target::Advisory { key: b, .. }) => a.cmp(b),
            // One backend per process: never mixed.
            #[cfg(feature = "postgres")]
            _ => std::cmp::Ordering::Equal,
        }
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Target::File { path, .. } => Some(path),
            #[cfg(feature = "postgres")]
            Target::Advisory { .. } => None,
        }
    }

    pub(crate) fn location(&self) -> LocationRef<'_> {
        match self {
            Target::File { path, .. } => LocationRef::File(path),
            #[cfg(feature = "postgres")]
            Target::Advisory { server, key } => LocationRef::Advisory {
                server: server.label(),
                key: *key,
            },
        }
    }

    fn ctx<'a>(&'a self, name: Option<&'a str>) -> Ctx<'a> {
        match self {
            Target::File { path, c_path } => Ctx { name, path, c_path },
            #[cfg(feature = "postgres")]
            Target::Advisory { .. } => unreachable!("a file context for a database lock"),
        }
    }

    pub(crate) fn open(&'static self, name: Option<&str>) -> Result<Handle, Error> {
        match self {
            Target::File { .. } => file::LockFile::open(self.ctx(name)).map(Handle::File),
            #[cfg(feature = "postgres")]
            Target::Advisory { server, key } => {
                pg::Session::open(server, *key, name, self.about(name)).map(Handle::Advisory)
            }
        }
    }

    fn about<'a>(&'a self, name: Option<&'a str>) -> About<'a> {
        About {
            name,
            at: Some(self.location()),
        }
    }

    /// After locking: is this the lock the caller means? A file must still
    /// be named by the path (else someone deleted or replaced it between our
    /// open and our lock, and the next caller would lock the new file).
    pub(crate) fn confirm(&self, name: Option<&str>, handle: &Handle) -> Result<bool, Error> {
        match handle {
            Handle::File(file) => file::still_named(self.ctx(name), file),
            #[cfg(feature = "postgres")]
            Handle::Advisory(_) => Ok(true),
        }
    }

    /// Whether `handle` still holds the lock as this target: a file must
    /// still be named by the path, a session must still hold the key.
    pub(crate) fn still_held(&self, name: Option<&str>, handle: &Handle) -> Result<bool, Error> {
        match handle {
            Handle::File(_) => self.confirm(name, handle),
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => session.still_held(self.about(name)),
        }
    }

    /// A number that grows with every acquisition (a database lock only).
    pub(crate) fn fencing_token(&self, name: Option<&str>, handle: &Handle) -> Result<u64, Error> {
        match handle {
            Handle::File(_) => Err(Error::other(
                ErrorKind::Unsupported,
                self.about(name),
                "a lock file has no fencing token: flock(2) gives no number that grows with \
                 every holder; fencing tokens come with locks on a PostgreSQL server \
                 (LOCKATTR_URL and the `postgres` feature)"
                    .to_owned(),
            )),
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => session.fencing_token(self.about(name)),
        }
    }

    /// Before answering busy without having opened what the path names now
    /// (another thread waits with the slot's descriptor, or a wait ran out
    /// of time): if no regular file stands there, nobody can hold the lock
    /// there, and the answer is that error, as a fresh process would get.
    pub(crate) fn refuse_if_not_a_file(&self, name: Option<&str>) -> Result<(), Error> {
        match self {
            Target::File { c_path, .. } => match file::identity_of(c_path) {
                Some((_, kind)) if kind != rustix::fs::FileType::RegularFile => {
                    Err(file::not_regular(self.ctx(name), file::describe(kind)))
                }
                _ => Ok(()),
            },
            #[cfg(feature = "postgres")]
            Target::Advisory { .. } => Ok(()),
        }
    }

    /// Everyone who holds the lock now, without taking it, opening it, or
    /// creating its file.
    pub(crate) fn holders(&self, name: Option<&str>) -> Result<Vec<Holder>, Error> {
        match self {
            Target::File { c_path, .. } => {
                let (identity, kind) = match file::identity_of(c_path) {
                    None => return Ok(Vec::new()), // no file: nobody holds it
                    Some(found) => found,
                };
                if kind != rustix::fs::FileType::RegularFile {
                    return Err(file::not_regular(self.ctx(name), file::describe(kind)));
                }
                file::holders(identity).ok_or_else(|| {
                    let text = "who holds a lock file cannot be seen without taking it: \
                                /proc/locks is missing or unreadable here"
                        .to_owned();
                    Error::other(ErrorKind::Unsupported, self.about(name), text)
                })
            }
            #[cfg(feature = "postgres")]
            Target::Advisory { server, key } => server
                .holders(*key)
                .map_err(|text| Error::other(ErrorKind::Io, self.about(name), text)),
        }
    }

    /// Who holds the lock now, looked up outside the slot's mutex. For a
    /// file, by the identity of the file we have open or wait on, else of
    /// what the path names.
    pub(crate) fn holder(&self, identity: Option<Identity>) -> Holder {
        match self {
            Target::File { c_path, .. } => {
                match identity.or_else(|| file::identity_of(c_path).map(|(identity, _)| identity)) {
                    Some(identity) => file::holder(identity),
                    None => Holder::Unknown,
                }
            }
            #[cfg(feature = "postgres")]
            Target::Advisory { server, key } => server.holder(*key),
        }
    }

    /// At release: was the lock lost while held?
    pub(crate) fn lost(&self, handle: &Handle) -> Option<Lost> {
        match (self, handle) {
            (Target::File { c_path, .. }, Handle::File(file)) => file.lost(c_path),
            #[cfg(feature = "postgres")]
            (_, Handle::Advisory(session)) => session.lost().then_some(Lost::Session),
            #[cfg(feature = "postgres")]
            _ => None,
        }
    }
}

impl Handle {
    pub(crate) fn try_lock(
        &mut self,
        target: &Target,
        name: Option<&str>,
        mode: LockMode,
    ) -> Result<Try, Error> {
        match self {
            Handle::File(file) => file
                .lock(mode, false)
                .map_err(|errno| target.ctx(name).os("lock", errno, None)),
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => session.try_lock(mode, target.about(name)),
        }
    }

    /// Blocks the calling thread until the lock is granted, or (where the
    /// backend can) `deadline` passes or the wait is cancelled: `Busy`.
    pub(crate) fn lock_blocking(
        &mut self,
        target: &Target,
        name: Option<&str>,
        mode: LockMode,
        deadline: Option<Instant>,
    ) -> Result<Try, Error> {
        match self {
            // flock(2) cannot be interrupted without a signal: no deadline.
            Handle::File(file) => {
                let _ = deadline;
                file.lock(mode, true)
                    .map_err(|errno| target.ctx(name).os("lock", errno, None))
            }
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => session.lock_blocking(mode, deadline, target.about(name)),
        }
    }

    pub(crate) fn unlock(&mut self, mode: LockMode) {
        match self {
            Handle::File(file) => file.unlock(),
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => session.unlock(mode),
        }
        let _ = mode;
    }

    /// Whether the handle can still be unlocked and used: a database
    /// session that ended (a server restart), or that may hold the lock
    /// without our knowing (a late cancel, a failed unlock), is closed
    /// instead and opened again when next needed.
    pub(crate) fn usable(&self) -> bool {
        match self {
            Handle::File(_) => true,
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => session.reusable(),
        }
    }

    /// What the slot keeps while a thread waits with this handle.
    pub(crate) fn in_flight(&self) -> InFlight {
        match self {
            Handle::File(file) => InFlight {
                identity: Some(file.identity),
                #[cfg(feature = "postgres")]
                cancel: None,
            },
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => InFlight {
                identity: None,
                cancel: Some(session.cancel()),
            },
        }
    }

    /// A handle whose lock was lost while held, let go of at release: a
    /// lock file's descriptor is closed now (its flock on the orphan ends
    /// with the hold it was); a database session is kept until
    /// [`Lost::report`] has said so, once with its connection's own word.
    pub(crate) fn after_loss(self) -> Option<Handle> {
        match self {
            Handle::File(_) => None,
            #[cfg(feature = "postgres")]
            advisory @ Handle::Advisory(_) => Some(advisory),
        }
    }

    pub(crate) fn identity(&self) -> Option<Identity> {
        match self {
            Handle::File(file) => Some(file.identity),
            #[cfg(feature = "postgres")]
            Handle::Advisory(_) => None,
        }
    }

    /// In a forked child: what the parent opened is the parent's. A
    /// descriptor may be closed (that never unlocks while the parent keeps
    /// its own); a database connection must be forgotten, never closed,
    /// since closing it cleanly would end the parent's session and every
    /// lock in it.
    pub(crate) fn abandon(self) {
        match self {
            Handle::File(file) => drop(file),
            #[cfg(feature = "postgres")]
            Handle::Advisory(session) => std::mem::forget(session),
        }
    }
}

impl InFlight {
    /// Asks the backend to stop a wait nobody wants any more.
    pub(crate) fn cancel(&self) {
        #[cfg(feature = "postgres")]
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::select;

    #[test]
    fn an_unusable_url_is_refused_never_ignored() {
        #[cfg(not(feature = "postgres"))]
        {
            let err = select("postgres://ci@db/locks").err().expect("refused");
            assert!(
                err.contains("without lockattr's `postgres` feature"),
                "{err}"
            );
            assert!(!err.contains("ci@db"), "no credentials in messages: {err}");
        }
        let err = select("redis://db/0").err().expect("refused");
        assert!(err.contains("`redis`"), "{err}");
        assert!(select("db.example").is_err());
    }
}
