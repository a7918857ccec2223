//! A lock directory of its own for each process of lockattr's tests.

/// A lock directory of its own for one process of lockattr's tests and doc
/// examples, so that they never meet another run's locks, or anything else
/// holding a lock of the same name: `$TMPDIR/lockattr-test.PID.N`, mode
/// 1777 like /tmp (the multi-user tests' users share it), removed on drop.
/// One left behind by a killed process is removed by a later
/// [`TestDir::new`], which tells it by its owner's flock being gone. Not
/// for users.
pub struct TestDir {
    path: std::path::PathBuf,
    owner: u32,
    // Holds an flock on the directory for as long as its owner lives.
    _alive: std::os::fd::OwnedFd,
}

impl TestDir {
    const PREFIX: &str = "lockattr-test.";

    /// # Panics
    ///
    /// When the directory cannot be made: a test cannot go on without it.
    #[allow(clippy::new_without_default)]
    #[track_caller]
    pub fn new() -> TestDir {
        use rustix::fs::Mode;
        let tmp = std::env::temp_dir();
        sweep(&tmp);
        let owner = std::process::id();
        for n in 0u64.. {
            let path = tmp.join(format!("{}{owner}.{n}", TestDir::PREFIX));
            match rustix::fs::mkdir(&path, Mode::RWXU) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(errno) => panic!("create {}: {errno}", path.display()),
            }
            // A sweep by another process may take it before we hold it.
            let Some(alive) = hold(&path) else { continue };
            let mode = Mode::from_raw_mode(0o1777);
            if let Err(errno) = rustix::fs::fchmod(&alive, mode) {
                panic!("chmod 1777 {}: {errno}", path.display());
            }
            return TestDir {
                path,
                owner,
                _alive: alive,
            };
        }
        unreachable!("a free name among all of u64")
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Removes the directory and everything in it; in a forked child, which
    /// does not own it, does nothing.
    pub fn remove(&self) {
        if std::process::id() == self.owner {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Opens and flocks the directory at `path`, if nobody holds it and it is
/// still the one at `path` once held.
fn hold(path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    use rustix::fs::{FlockOperation, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, rustix::fs::Mode::empty()).ok()?;
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).ok()?;
    let (held, now) = (rustix::fs::fstat(&fd).ok()?, rustix::fs::lstat(path).ok()?);
    (held.st_dev == now.st_dev && held.st_ino == now.st_ino).then_some(fd)
}

/// Removes the test directories in `tmp` whose owner is gone.
fn sweep(tmp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = name
            .to_str()
            .is_some_and(|name| name.starts_with(TestDir::PREFIX));
        if stale && let Some(_held) = hold(&entry.path()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// For doc examples, as a hidden first line
/// `# let _dir = lockattr::__private::doc_dir();`: a fresh [`TestDir`],
/// pinned as this process's default lock directory.
#[track_caller]
pub fn doc_dir() -> TestDir {
    let dir = TestDir::new();
    if let Err(err) = crate::set_default_dir(dir.path()) {
        panic!("pin the example's lock directory: {err}");
    }
    dir
}
