//! Shared by this package's tests: a lock directory of the run's own, and a
//! probe for "is this lock held right now".
#![allow(dead_code)] // each test binary uses a different part

use lockattr::{Lock, LockName};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Points the default lock directory at this run's own, under Cargo's
/// scratch directory for tests, so nothing else can hold these locks.
pub fn own_dir() {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("edition2021-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the lock directory");
        dir
    });
    lockattr::set_default_dir(dir).expect("this run's lock directory");
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
