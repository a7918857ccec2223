//! Shared by this package's tests: a lock directory of the run's own, and a
//! probe for "is this lock held right now".
#![allow(dead_code)] // each test binary uses a different part

use lockattr::{Lock, LockName};
use std::path::PathBuf;

/// This run's lock directory, under Cargo's scratch directory for tests,
/// so that nothing else holds these locks; removed when dropped. The
/// default directory is set once per process, so each test binary here has
/// one test, which owns it.
pub struct OwnDir(PathBuf);

impl OwnDir {
    pub fn new() -> OwnDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("edition2021-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the lock directory");
        lockattr::set_default_dir(&dir).expect("this run's lock directory");
        OwnDir(dir)
    }
}

impl Drop for OwnDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether another thread of this process finds the lock busy right now
/// (threads exclude each other like processes).
pub fn busy_elsewhere(name: &'static str) -> bool {
    std::thread::spawn(move || match Lock::new(LockName::new(name)).acquire() {
        Ok(_guard) => false,
        Err(err) if err.is_busy() => true,
        Err(err) => panic!("probing {name} failed: {err}"),
    })
    .join()
    .expect("the probing thread")
}
