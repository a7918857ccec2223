//! What the chaos loop does to the lock file: removes it (`rm`) or puts a
//! new file over it (`mv`), as a careless operator or a /tmp cleaner would.
//! lockattr documents that it cannot protect a holder from that: the next
//! caller locks a new file and runs beside the holder. Each such event is
//! journalled with the file it took away and the times around it, so that
//! the overlaps it causes can be told from the ones it cannot explain.

use crate::journal::{Journal, Kind, Record, now};
use crate::users::User;
use rustix::fs::{Mode, OFlags};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Removes the lock file, or replaces it with a new 0644 file owned by root
/// or by `owner`. Nothing else removes or renames it, so the file looked at
/// is the file removed. `None` when there is no file now.
pub fn remove(
    lock: &Path,
    replace: bool,
    owner: Option<&User>,
    journal: &Journal,
    serial: u64,
) -> std::io::Result<Option<Record>> {
    let before = now();
    let Some(old) = crate::fileid::of_path(lock) else {
        return Ok(None);
    };
    let mut record = Record::new(Kind::Delete);
    if replace {
        let temp = lock.with_file_name(format!(".soak-replacement.{serial}"));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&temp, flags, Mode::from_raw_mode(0o644))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
        if let Some(user) = owner {
            let uid = rustix::process::Uid::from_raw(user.uid);
            let gid = rustix::process::Gid::from_raw(user.gid);
            rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
        }
        record.kind = Kind::Replace as u8;
        record.c = crate::fileid::of_fd(&fd).unwrap_or(0);
        std::fs::rename(&temp, lock)?;
    } else {
        std::fs::remove_file(lock)?;
    }
    record.t = now();
    record.a = old;
    record.b = before;
    journal.append(&record);
    Ok(Some(record))
}

/// The lock file must always be a regular file of mode 0644 (lockattr makes
/// it so whatever the creator's umask, and never shows it narrower).
pub fn check_mode(lock: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(lock) {
        Ok(meta) if meta.file_type().is_file() && meta.mode() & 0o7777 == 0o644 => Ok(()),
        Ok(meta) => Err(format!(
            "{} is {:?} with mode {:04o}, owned by uid {}",
            lock.display(),
            meta.file_type(),
            meta.mode() & 0o7777,
            meta.uid()
        )),
        Err(_) => Ok(()), // removed by the chaos, not yet made again
    }
}
