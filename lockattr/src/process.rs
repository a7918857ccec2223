//! Which process this is, in one memory load: how the registry notices that
//! it runs in a child made by fork(2) without exec.
//!
//! getpid(2) would tell, but it is a system call (glibc stopped caching the
//! pid), and it would sit twice on every lock and unlock. Instead the pid
//! lives in a page mapped with `MADV_WIPEONFORK`: the kernel hands a forked
//! child that page zero-filled, so a zero means "forked since the pid was
//! stored" and the child stores its own. Mapping the page costs more than
//! a whole first lock, so a process asks getpid(2) for its first few locks
//! and maps the page only once it is clearly locking repeatedly. Where
//! `MADV_WIPEONFORK` does not exist (other Unix systems, Linux before 4.14,
//! or `--cfg lockattr_portable`), it asks getpid(2) every time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many times to ask getpid(2) before mapping the page.
const ASK_FIRST: u32 = 16;

/// This process's pid.
pub(crate) fn pid() -> u32 {
    static PAGE: OnceLock<Option<&'static AtomicU32>> = OnceLock::new();
    static ASKED: AtomicU32 = AtomicU32::new(0);
    let page = match PAGE.get() {
        Some(page) => page,
        None if ASKED.fetch_add(1, Ordering::Relaxed) < ASK_FIRST => return getpid(),
        None => PAGE.get_or_init(map_wipe_on_fork_page),
    };
    let Some(cell) = page else {
        return getpid(); // no MADV_WIPEONFORK (Linux < 4.14): ask every time
    };
    match cell.load(Ordering::Relaxed) {
        0 => {
            let pid = getpid();
            cell.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

fn getpid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

#[cfg(not(all(target_os = "linux", not(lockattr_portable))))]
fn map_wipe_on_fork_page() -> Option<&'static AtomicU32> {
    None
}

#[cfg(all(target_os = "linux", not(lockattr_portable)))]
fn map_wipe_on_fork_page() -> Option<&'static AtomicU32> {
    use rustix::mm::{Advice, MapFlags, ProtFlags};
    let len = rustix::param::page_size();
    // SAFETY: a fresh private anonymous mapping that nothing else refers to.
    // It is never unmapped (unless madvise fails, before any reference to it
    // exists), so a `'static` reference into it stays valid; it is zeroed
    // and page-aligned, which suits an `AtomicU32`.
    unsafe {
        let page = rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
        .ok()?;
        if rustix::mm::madvise(page, len, Advice::LinuxWipeOnFork).is_err() {
            let _ = rustix::mm::munmap(page, len);
            return None;
        }
        Some(&*page.cast::<AtomicU32>())
    }
}
