//! The lock file itself: opened safely, locked with flock(2), checked
//! against its path, and its holder looked up in `/proc/locks`.

use crate::backend::Lost;
use crate::error::{About, Error, ErrorKind, Holder};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

/// The mode a lock file is created with: readable by every user, which is
/// all flock(2) needs.
const FILE_MODE: u32 = 0o644;

/// How a file is locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    Exclusive,
    Shared,
}

/// A file's identity: after locking, the path must still name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    // `st_dev` and `st_ino` are `u64` on 64-bit Linux but narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    fn of(st: &Stat) -> Identity {
        Identity {
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
        }
    }
}

/// Which file, and for which lock, for messages.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The lock's name; `None` for a lock given by its path.
    pub(crate) name: Option<&'a str>,
    pub(crate) path: &'a Path,
    /// `path` as the system calls take it, made once per lock file.
    pub(crate) c_path: &'a CStr,
}

impl<'a> Ctx<'a> {
    pub(crate) fn about(&self) -> About<'a> {
        About::file(self.name, self.path)
    }

    pub(crate) fn os(&self, action: &'static str, errno: Errno, hint: Option<String>) -> Error {
        Error::os(self.about(), action, errno, hint)
    }
}

/// An open lock file: the descriptor flock(2) locks, and which file it is.
pub(crate) struct LockFile {
    fd: OwnedFd,
    pub(crate) identity: Identity,
    /// The file's change time (`st_ctime`, seconds and nanoseconds) when
    /// the path last named it, for [`LockFile::lost`]; `i64::MIN` seconds
    /// when the path must be looked up again at release.
    checked: (AtomicI64, AtomicI64),
}

impl LockFile {
    pub(crate) fn open(ctx: Ctx<'_>) -> Result<LockFile, Error> {
        let (fd, identity) = open(ctx)?;
        let checked = (AtomicI64::new(i64::MIN), AtomicI64::new(0));
        Ok(LockFile {
            fd,
            identity,
            checked,
        })
    }

    /// The path named this file just now (`lstat` gave `st`). A change time
    /// under a second old is not kept: the kernel stamps it with a coarse
    /// clock, so a rename in the same tick could leave it as it was.
    fn note_checked(&self, st: &Stat) {
        let (sec, nsec) = ctime(st);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_secs() as i64);
        let kept = if now - sec >= 2 { sec } else { i64::MIN };
        self.checked.0.store(kept, Ordering::Relaxed);
        self.checked.1.store(nsec, Ordering::Relaxed);
    }

    pub(crate) fn lock(&self, mode: LockMode, block: bool) -> Result<Try, Errno> {
        flock(self.fd.as_fd(), mode, block)
    }

    pub(crate) fn unlock(&self) {
        unlock(self.fd.as_fd());
    }

    /// Whether the path no longer names the file we hold, asked at release:
    /// `rm`, a `/tmp` cleaner, `mv` of the file elsewhere, or `mv` or `cp`
    /// over it. An `fstat` of the descriptor answers most of it at a third
    /// of a path look-up's cost: a file still linked whose change time is
    /// the one seen when the path last named it was neither unlinked nor
    /// renamed (both change it). Otherwise the path is looked up. When it
    /// cannot be looked at now (an unsearchable directory), nothing is
    /// said: that is no evidence of a removal.
    pub(crate) fn lost(&self, c_path: &CStr) -> Option<Lost> {
        let st = retry(|| rustix::fs::fstat(&self.fd)).ok()?;
        let checked = (
            self.checked.0.load(Ordering::Relaxed),
            self.checked.1.load(Ordering::Relaxed),
        );
        let unchanged = ctime(&st) == checked;
        if st.st_nlink > 0 && unchanged {
            return None;
        }
        match named(c_path, self.identity) {
            Ok(Named::Same) | Err(_) => None,
            Ok(Named::Deleted) => Some(Lost::Deleted),
            Ok(Named::Replaced) => Some(Lost::Replaced),
        }
    }
}

/// A file's change time, seconds and nanoseconds.
// Both are `i64` on 64-bit Linux but other types elsewhere.
#[allow(clippy::unnecessary_cast)]
fn ctime(st: &Stat) -> (i64, i64) {
    (st.st_ctime as i64, st.st_ctime_nsec as i64)
}

/// Opens the lock file, creating it if missing, and checks it is a regular
/// file. Never follows a symlink, never truncates, never unlinks.
pub(crate) fn open(ctx: Ctx<'_>) -> Result<(OwnedFd, Identity), Error> {
    // O_NONBLOCK: a FIFO planted in the file's place must not hang the open.
    // O_NOCTTY: nor may a terminal device become our controlling terminal.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    // Each turn either opens the file or finds it missing and races to create
    // it; losing that race to another creator more than a few times in a row
    // means someone keeps deleting it.
    for _ in 0..16 {
        // Read-only and without O_CREAT: under fs.protected_regular, O_CREAT
        // or write access on another user's file in a sticky directory is
        // EACCES, even for root. flock(2) needs only a read-only descriptor.
        match retry(|| rustix::fs::open(ctx.c_path, flags, Mode::empty())) {
            Ok(fd) => return checked(ctx, fd, "open"),
            Err(Errno::NOENT) => {}
            Err(errno) => return Err(open_failure(ctx, errno)),
        }
        match create::publish(ctx) {
            // Ours, or another creator's: either way it is there now, with
            // its final mode; open it read-only like everyone else.
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(create_failure(ctx, errno)),
        }
    }
    Err(Error::other(
        ErrorKind::Io,
        ctx.about(),
        "the lock file keeps disappearing between create and open; something is deleting it, \
         which lets two holders run at once: stop whatever removes it"
            .to_owned(),
    ))
}

/// Creating the lock file so that no other user ever sees it with a mode
/// narrower than 0644. `O_CREAT` alone would show the umask's mode (0600
/// under umask 077) until `fchmod`, and another user's open in that window
/// fails with EACCES. So the file is made complete where nobody can open it
/// and only then given its name, atomically; EEXIST means another creator
/// won, which is as good.
mod create {
    use super::{Ctx, FILE_MODE, retry};
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub(super) fn publish(ctx: Ctx<'_>) -> Result<(), Errno> {
        let dir = ctx.path.parent().unwrap_or(Path::new("/"));
        #[cfg(all(target_os = "linux", not(lockattr_portable)))]
        match unnamed(ctx, dir) {
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => {}
            linked => return linked,
        }
        through_temporary_name(ctx, dir)
    }

    /// Linux: an `O_TMPFILE` inode has no name until `linkat` gives it one.
    #[cfg(all(target_os = "linux", not(lockattr_portable)))]
    fn unnamed(ctx: Ctx<'_>, dir: &Path) -> Result<(), Errno> {
        use rustix::fs::{AtFlags, CWD};
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let fd = retry(|| rustix::fs::open(dir, flags, Mode::from_raw_mode(FILE_MODE)))?;
        // The umask narrowed the mode; set it while the file is unreachable.
        retry(|| rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE)))?;
        // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc link
        // to our own descriptor needs nothing.
        let proc_link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let linked = retry(|| {
            rustix::fs::linkat(CWD, &*proc_link, CWD, ctx.c_path, AtFlags::SYMLINK_FOLLOW)
        });
        match linked {
            // No /proc mounted: try the capability path, then give up on
            // O_TMPFILE.
            Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
                retry(|| rustix::fs::linkat(&fd, "", CWD, ctx.c_path, AtFlags::EMPTY_PATH))
                    .map_err(|_| Errno::OPNOTSUPP)
            }
            other => other,
        }
    }

    /// Elsewhere: a private temporary name in the same directory, completed,
    /// then hard-linked to the lock file's name and removed. A crash between
    /// the two leaves a stray `.NAME.lock.PID-N.tmp`, never a bad lock file.
    pub(super) fn through_temporary_name(ctx: Ctx<'_>, dir: &Path) -> Result<(), Errno> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let file_name = ctx.path.file_name().unwrap_or_default().as_bytes();
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let (temp, fd) = loop {
            let mut temp = dir.as_os_str().as_bytes().to_vec();
            temp.extend_from_slice(b"/.");
            temp.extend_from_slice(file_name);
            temp.extend_from_slice(
                format!(
                    ".{}-{}.tmp",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )
                .as_bytes(),
            );
            let temp = CString::new(temp).map_err(|_| Errno::INVAL)?;
            match retry(|| rustix::fs::open(&*temp, flags, Mode::from_raw_mode(FILE_MODE))) {
                Ok(fd) => break (temp, fd),
                Err(Errno::EXIST) => continue,
                Err(errno) => return Err(errno),
            }
        };
        let linked = retry(|| rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE)))
            .and_then(|()| retry(|| rustix::fs::link(&*temp, ctx.c_path)));
        let _ = rustix::fs::unlink(&*temp);
        linked
    }
}

fn checked(ctx: Ctx<'_>, fd: OwnedFd, action: &'static str) -> Result<(OwnedFd, Identity), Error> {
    let st = rustix::fs::fstat(&fd).map_err(|errno| ctx.os(action, errno, None))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok((fd, Identity::of(&st))),
        other => Err(not_regular(ctx, describe(other))),
    }
}

pub(crate) fn not_regular(ctx: Ctx<'_>, what: &str) -> Error {
    let text = format!(
        "{} is {what}, not a regular file; lockattr never follows or replaces it: remove it, \
         or choose another directory",
        ctx.path.display()
    );
    Error::other(ErrorKind::NotRegularFile, ctx.about(), text)
}

pub(crate) fn describe(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    }
}

fn open_failure(ctx: Ctx<'_>, errno: Errno) -> Error {
    match errno {
        // O_NOFOLLOW on a symlink (dangling or not) is ELOOP.
        Errno::LOOP => not_regular(ctx, "a symbolic link"),
        // Opening a Unix socket is ENXIO.
        Errno::NXIO if identity_of(ctx.c_path).is_some_and(|(_, ty)| ty == FileType::Socket) => {
            not_regular(ctx, "a socket")
        }
        Errno::ACCESS | Errno::PERM => {
            let hint = rustix::fs::lstat(ctx.path).ok().map(|st| {
                let mode = st.st_mode & 0o7777;
                format!(
                    "it is owned by uid {} with mode {mode:04o} and uid {} cannot read it: ask \
                     its owner to run `chmod 0644 {}`",
                    st.st_uid,
                    rustix::process::getuid().as_raw(),
                    ctx.path.display()
                )
            });
            ctx.os("open", errno, hint)
        }
        _ => ctx.os("open", errno, dir_hint(ctx, errno)),
    }
}

fn create_failure(ctx: Ctx<'_>, errno: Errno) -> Error {
    let hint = match errno {
        Errno::ACCESS | Errno::PERM => ctx.path.parent().map(|dir| {
            format!(
                "uid {} may not create files in {}: choose a writable directory with `dir = \
                 \"...\"` or LOCKATTR_DIR, or have the lock file created once with mode 0644",
                rustix::process::getuid().as_raw(),
                dir.display()
            )
        }),
        _ => dir_hint(ctx, errno),
    };
    ctx.os("create", errno, hint)
}

/// What to do about an errno that is not about the file itself.
fn dir_hint(ctx: Ctx<'_>, errno: Errno) -> Option<String> {
    let dir = ctx.path.parent()?.display();
    match errno {
        Errno::NOENT => Some(format!(
            "the directory {dir} does not exist: create it, or choose another"
        )),
        Errno::NOTDIR => Some(format!("{dir} is not a directory")),
        Errno::ROFS => Some(format!(
            "{dir} is on a read-only file system: choose another directory"
        )),
        Errno::NOSPC | Errno::DQUOT => Some(format!(
            "the file system of {dir} has no space, inodes or quota left for a new file: free \
             some, or choose another directory"
        )),
        Errno::MFILE => Some(format!(
            "this process has as many files open as its limit allows ({}): close some, or \
             raise the limit (`ulimit -n`); lockattr keeps one descriptor open per lock file, \
             for at most 64 files, until `lockattr::close_idle()`",
            open_file_limit()
        )),
        Errno::NFILE => Some(
            "the system has as many files open as it allows (fs.file-max): close some".to_owned(),
        ),
        _ => None,
    }
}

fn open_file_limit() -> String {
    match rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        Some(limit) => format!("RLIMIT_NOFILE {limit}"),
        None => "RLIMIT_NOFILE unlimited".to_owned(),
    }
}

/// What a non-blocking flock found.
pub(crate) enum Try {
    Locked,
    Busy,
}

/// One flock(2) call; only EWOULDBLOCK is busy, every other errno an error.
pub(crate) fn flock(fd: BorrowedFd<'_>, mode: LockMode, block: bool) -> Result<Try, Errno> {
    let op = match (mode, block) {
        (LockMode::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
        (LockMode::Shared, false) => FlockOperation::NonBlockingLockShared,
        (LockMode::Exclusive, true) => FlockOperation::LockExclusive,
        (LockMode::Shared, true) => FlockOperation::LockShared,
    };
    match retry(|| rustix::fs::flock(fd, op)) {
        Ok(()) => Ok(Try::Locked),
        Err(Errno::WOULDBLOCK) => Ok(Try::Busy),
        Err(errno) => Err(errno),
    }
}

/// Drops our flock on `fd`; the descriptor stays open for the next hold.
pub(crate) fn unlock(fd: BorrowedFd<'_>) {
    // LOCK_UN on a descriptor we locked cannot fail but for EINTR or EBADF,
    // and closing the descriptor would release it anyway.
    let _ = retry(|| rustix::fs::flock(fd, FlockOperation::Unlock));
}

/// Whether `path` still names the file we locked. A holder that deleted or
/// replaced it meanwhile would otherwise leave us locking an orphan inode
/// while the next caller locks the new file.
pub(crate) fn still_named(ctx: Ctx<'_>, file: &LockFile) -> Result<bool, Error> {
    match retry(|| rustix::fs::lstat(ctx.c_path)) {
        Ok(st) if Identity::of(&st) == file.identity => {
            file.note_checked(&st);
            Ok(true)
        }
        Ok(_) | Err(Errno::NOENT) => Ok(false),
        Err(errno) => Err(ctx.os("check", errno, dir_hint(ctx, errno))),
    }
}

/// What the path names compared with a file we have open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    Same,
    /// Nothing has the name now: `rm`, or `mv` of the file elsewhere.
    Deleted,
    /// Another file has the name: `mv` or `cp` over it, or deleted and
    /// created again.
    Replaced,
}

pub(crate) fn named(c_path: &CStr, identity: Identity) -> Result<Named, Errno> {
    match retry(|| rustix::fs::lstat(c_path)) {
        Ok(st) if Identity::of(&st) == identity => Ok(Named::Same),
        Ok(_) => Ok(Named::Replaced),
        Err(Errno::NOENT) => Ok(Named::Deleted),
        Err(errno) => Err(errno),
    }
}

/// What the path names now, without opening it (a FIFO there must not
/// block us, and a look-up must not add a descriptor on the lock file).
pub(crate) fn identity_of(c_path: &CStr) -> Option<(Identity, FileType)> {
    let st = retry(|| rustix::fs::lstat(c_path)).ok()?;
    Some((Identity::of(&st), FileType::from_raw_mode(st.st_mode)))
}

/// A directory's identity, following symlinks: one directory reached by
/// two paths has one identity.
pub(crate) fn identity_of_dir(dir: &Path) -> Option<Identity> {
    let st = retry(|| rustix::fs::stat(dir)).ok()?;
    Some(Identity::of(&st))
}

/// Who holds a flock on the file with this identity, for a busy message:
/// the first holder listed, else why none is named.
pub(crate) fn holder(identity: Identity) -> Holder {
    match holders(identity) {
        Some(holders) => holders.into_iter().next().unwrap_or(Holder::Unlisted),
        None => Holder::Unknown,
    }
}

/// Every process holding a flock on the file with this identity, from
/// `/proc/locks`; `None` when it cannot be read.
#[cfg(all(target_os = "linux", not(lockattr_portable)))]
pub(crate) fn holders(identity: Identity) -> Option<Vec<Holder>> {
    let key = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(identity.dev as _),
        rustix::fs::minor(identity.dev as _),
        identity.ino
    );
    // The kernel builds /proc/locks a piece per read and resumes by position,
    // so a lock released between two reads can shift the listing and hide
    // the holder's line: read in large pieces, and look up to three times.
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids = find_flock_holders(&read_proc_locks()?, &key);
        if !pids.is_empty() {
            break;
        }
    }
    let me = crate::process::pid();
    Some(
        pids.into_iter()
            .map(|pid| match pid {
                _ if pid == me => Holder::ThisProcess { pid },
                _ => {
                    let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .ok()
                        .map(|comm| comm.trim_end().to_owned());
                    let uid = rustix::fs::stat(format!("/proc/{pid}"))
                        .ok()
                        .map(|st| st.st_uid);
                    Holder::process(pid, command, uid)
                }
            })
            .collect(),
    )
}

/// Without `/proc/locks`, the kernel says busy and nothing more.
#[cfg(not(all(target_os = "linux", not(lockattr_portable))))]
pub(crate) fn holders(_identity: Identity) -> Option<Vec<Holder>> {
    None
}

#[cfg(all(target_os = "linux", not(lockattr_portable)))]
fn read_proc_locks() -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/locks").ok()?;
    let mut bytes = Vec::with_capacity(64 * 1024);
    loop {
        let len = bytes.len();
        bytes.resize(len + 64 * 1024, 0);
        match file.read(&mut bytes[len..]) {
            Ok(0) => {
                bytes.truncate(len);
                return String::from_utf8(bytes).ok();
            }
            Ok(n) => bytes.truncate(len + n),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => bytes.truncate(len),
            Err(_) => return None,
        }
    }
}

/// Finds the pid holding a flock on `key` (`MAJOR:MINOR:INODE` as
/// `/proc/locks` prints it): lines such as
/// `12: FLOCK  ADVISORY  WRITE 4242 fe:01:1837 0 EOF`. Waiters (`->`) and
/// POSIX or OFD locks, which do not conflict with flock, are skipped.
#[cfg_attr(
    not(all(target_os = "linux", not(lockattr_portable))),
    allow(dead_code)
)]
fn find_flock_holders(locks: &str, key: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                // A holder outside our pid namespace is listed as pid 0.
                [_, "FLOCK", _, _, pid, id, ..] if *id == key => {
                    pid.parse().ok().filter(|&p| p != 0)
                }
                _ => None,
            }
        })
        .collect();
    pids.dedup();
    pids
}

/// Repeats a system call interrupted by a signal.
fn retry<T>(mut call: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_flock_holders;

    fn find_flock_holder(locks: &str, key: &str) -> Option<u32> {
        find_flock_holders(locks, key).first().copied()
    }

    #[test]
    fn proc_locks_lines() {
        let locks = "1: POSIX  ADVISORY  WRITE 11 fe:01:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fe:01:99 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 77 fe:01:99 0 EOF\n\
                     3: FLOCK  ADVISORY  READ 5 fe:01:100 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 0 fe:01:101 0 EOF\n";
        assert_eq!(find_flock_holder(locks, "fe:01:99"), Some(4242));
        assert_eq!(find_flock_holder(locks, "fe:01:100"), Some(5));
        assert_eq!(find_flock_holder(locks, "fe:01:1"), None);
        assert_eq!(
            find_flock_holder(locks, "fe:01:101"),
            None,
            "pid 0: not in our pid namespace"
        );
    }
}
