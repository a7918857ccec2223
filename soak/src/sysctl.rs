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
use std::time::Duration;

const PROTECTED_REGULAR: &str = "/proc/sys/fs/protected_regular";

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
        if let Err(err) = std::fs::write(PROTECTED_REGULAR, format!("{}\n", self.old)) {
            eprintln!(
                "*** lockattr-soak: could not restore fs.protected_regular={}: {err} ***",
                self.old
            );
        }
    }
}

/// Whether this process may change the sysctl at all.
pub fn writable() -> bool {
    rustix::process::geteuid().is_root() && std::path::Path::new(PROTECTED_REGULAR).exists()
}
