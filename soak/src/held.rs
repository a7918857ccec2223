//! Which flock this process really holds, asked of the kernel rather than of
//! lockattr: `/proc/self/fdinfo/N` lists the locks that the open file behind
//! descriptor N holds (granted ones only; a waiter is not listed). A body
//! that finds none is running without the lock, whatever lockattr said.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// The file, as `fileid` names it.
    pub file: u64,
    /// An exclusive (`WRITE`) flock, not a shared (`READ`) one.
    pub exclusive: bool,
}

/// The flock this process holds through a descriptor of the lock file at
/// `path`, or of a file that had that name (the kernel shows a deleted one
/// as `PATH (deleted)`).
pub fn by_path(path: &Path) -> Option<Held> {
    let want = path.as_os_str().as_bytes();
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.as_os_str().as_bytes();
        let ours = target == want || target.strip_prefix(want) == Some(b" (deleted)");
        let fd = entry.file_name().to_str().and_then(|n| n.parse().ok());
        if let (true, Some(fd)) = (ours, fd)
            && let Some(held) = by_fd(fd)
        {
            return Some(held);
        }
    }
    None
}

/// The flock held through descriptor `fd` of this process.
pub fn by_fd(fd: i32) -> Option<Held> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    // lock:	1: FLOCK  ADVISORY  WRITE 4242 fe:01:1837 0 EOF
    let line = info
        .lines()
        .find(|line| line.starts_with("lock:") && line.contains(" FLOCK "))?;
    let exclusive = line.split_whitespace().any(|word| word == "WRITE");
    // SAFETY: `fd` is open in this process for the length of the call: a
    // descriptor of the lock file, kept by lockattr while the caller holds
    // the lock, or the one the flock(1) script locked.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Some(Held {
        file: crate::fileid::of_fd(fd)?,
        exclusive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_our_flock_and_its_mode() {
        let dir = std::env::temp_dir().join(format!("lockattr-soak-held.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let file = std::fs::File::create(&path).unwrap();
        assert_eq!(by_path(&path), None, "no flock yet");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared).unwrap();
        let held = by_fd(file.as_raw_fd()).expect("shared flock");
        assert!(!held.exclusive);
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
        std::fs::remove_file(&path).unwrap();
        let held = by_path(&path).expect("exclusive flock on a deleted file");
        assert!(held.exclusive);
        drop(file);
        std::fs::remove_dir(&dir).unwrap();
    }
}
