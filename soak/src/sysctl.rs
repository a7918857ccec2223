//! Flipping `fs.protected_regular` (0, 1, 2) for a while, as the chaos
//! loop does now and then.
//!
//! The sysctl belongs to the whole host, and other runs (the test suite's
//! `tests/users.rs`) change it too: a window of changes is opened only under
//! lockattr's own lock on the sysctl's file (as `tests/users.rs` takes it),
//! and closed by writing the old value back before that lock is let go, also
//! when the run fails or is interrupted (`Drop`). Windows are short, so
//! another run never waits long for its turn; a window that cannot get the
//! lock at once is skipped.

use lockattr::Lock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PROTECTED_REGULAR: &str = "/proc/sys/fs/protected_regular";

/// The value to write back while a window is open, for [`restore_now`].
static OPEN: Mutex<Option<String>> = Mutex::new(None);
/// A window's old value could not be written back: the run fails.
static NOT_RESTORED: AtomicBool = AtomicBool::new(false);

pub struct Window {
    old: String,
    now: u8,
    // Dropped after `drop` wrote the old value back.
    _host_wide: lockattr::Guard,
}

impl Window {
    /// Takes the host-wide lock (waiting at most a moment) and reads the
    /// value to restore. `None`: another run has it now.
    pub fn open() -> Option<Window> {
        let lock = Lock::at_path(PROTECTED_REGULAR).wait_for(Duration::from_millis(200));
        let guard = lock.acquire().ok()?;
        let old = std::fs::read_to_string(PROTECTED_REGULAR).ok()?;
        let old = old.trim().to_owned();
        let now = old.parse().unwrap_or(0);
        *OPEN.lock().unwrap_or_else(|e| e.into_inner()) = Some(old.clone());
        Some(Window {
            old,
            now,
            _host_wide: guard,
        })
    }

    pub fn value(&self) -> u8 {
        self.now
    }

    pub fn set(&mut self, level: u8) -> std::io::Result<()> {
        std::fs::write(PROTECTED_REGULAR, format!("{level}\n"))?;
        self.now = level;
        Ok(())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        restore(&self.old);
        *OPEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn restore(old: &str) {
    if let Err(err) = std::fs::write(PROTECTED_REGULAR, format!("{old}\n")) {
        NOT_RESTORED.store(true, Ordering::SeqCst);
        eprintln!("*** lockattr-soak: could not restore fs.protected_regular={old}: {err} ***");
    }
}

/// Writes back the value of an open window now: for a process about to
/// abort, which runs no `Drop`.
pub fn restore_now() {
    if let Ok(open) = OPEN.try_lock()
        && let Some(old) = open.as_deref()
    {
        restore(old);
    }
}

/// Whether a window's old value could not be written back.
pub fn not_restored() -> bool {
    NOT_RESTORED.load(Ordering::SeqCst)
}

/// Whether this process may change the sysctl at all.
pub fn writable() -> bool {
    rustix::process::geteuid().is_root() && std::path::Path::new(PROTECTED_REGULAR).exists()
}
