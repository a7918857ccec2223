//! Which file a lock file is, across the run. Inode numbers alone do not
//! say: a file the chaos loop removed frees its inode number once its last
//! descriptor closes, and the next lock file created may get the same one
//! (ext4 and tmpfs reuse them at once). So a file is its inode number (low
//! 32 bits) and a hash of its birth time (high 32 bits), from statx(2).
//! Where the file system keeps no birth time, the high half is 0 and the
//! replay warns that files are told apart by inode alone.

use rustix::fs::{AtFlags, CWD, StatxFlags};
use std::os::fd::AsFd;
use std::path::Path;

/// The file at `path` (not following a symlink).
pub fn of_path(path: &Path) -> Option<u64> {
    let stx = rustix::fs::statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, mask()).ok()?;
    Some(key(&stx))
}

/// The file open on `fd`, named or not.
pub fn of_fd(fd: impl AsFd) -> Option<u64> {
    let stx = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, mask()).ok()?;
    Some(key(&stx))
}

fn mask() -> StatxFlags {
    StatxFlags::INO | StatxFlags::BTIME
}

fn key(stx: &rustix::fs::Statx) -> u64 {
    let birth = if stx.stx_mask & StatxFlags::BTIME.bits() != 0 {
        let born = stx.stx_btime.tv_sec as u64 * 1_000_000_000 + u64::from(stx.stx_btime.tv_nsec);
        // A 64-bit mix, so that births a few ns apart differ in the top half.
        let mut z = born.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    } else {
        0
    };
    (stx.stx_ino & 0xffff_ffff) | (birth << 32)
}

/// The inode number of a file key.
pub fn inode(key: u64) -> u64 {
    key & 0xffff_ffff
}

/// Whether the key tells files by birth too.
pub fn has_birth(key: u64) -> bool {
    key >> 32 != 0
}

/// `inode N` or `inode N/born XXXXXXXX`, for messages.
pub fn show(key: u64) -> String {
    match has_birth(key) {
        true => format!("inode {}/{:08x}", inode(key), key >> 32),
        false => format!("inode {}", inode(key)),
    }
}
