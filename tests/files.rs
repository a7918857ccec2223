//! The lock file itself: what stands at its path (a symlink, a FIFO, a
//! directory, nothing), a file deleted or replaced under a holder, its mode
//! whatever the umask, that it is never deleted, and where it lives
//! (`LOCKATTR_DIR`, `lock_path`), and `LOCKATTR_URL` refusing every lock.
//!
//! Each test works in its own directory; other processes are lock agents
//! (`tests/agent`).

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use common::Kid;
use lockattr::{ErrorKind, exclusive};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Runs on a child process started by a test below.
#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return; // run by hand with --ignored: nothing to do
    };
    match role.as_str() {
        agent::ROLE => agent::serve(),
        "own-dir" => {
            let dir = lockattr::__private::TestDir::new();
            println!("DIR {}", dir.path().display());
            let _ = std::io::stdin().read_line(&mut String::new());
        }
        "url-result" => match url_result() {
            Ok(()) => println!("OUTCOME RAN"),
            Err(err) => println!("OUTCOME {}", agent::describe(&err)),
        },
        "url-unit" => {
            url_unit();
            println!("OUTCOME RAN-OR-SKIPPED");
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// Takes `lock` on another thread and fails the test if no answer comes
/// within 10 s: whatever stands at the path, the lock must never hang.
fn acquire_within_10s(lock: lockattr::Lock) -> Reply {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Reply::of(lock.acquire()));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the lock did not answer within 10 s")
}

fn assert_not_regular(reply: &Reply, what: &str, path: &Path) {
    match reply {
        Reply::Err(kind, message) => {
            assert_eq!(kind, "NotRegularFile", "{message}");
            assert!(
                message.contains(&path.display().to_string()),
                "names the path: {message}"
            );
            assert!(message.contains(what), "says it is {what}: {message}");
        }
        other => panic!("expected a NotRegularFile error, got {other:?}"),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

// --------------------------------------------------- what stands at the path

/// A symlink planted at `DIR/NAME.lock` pointing to a file of the victim's:
/// an error, and the target keeps its content and mode.
#[test]
fn a_planted_symlink_is_an_error_and_its_target_is_untouched() {
    let dir = TempDir::new("symlink");
    let target = dir.path().join("precious");
    std::fs::write(&target, "precious data\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let lock = dir.lock("planted");
    let path = lock.path().unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();

    assert_not_regular(&acquire_within_10s(lock), "a symbolic link", &path);
    let mut other = Agent::start("planted", Some(dir.path()));
    assert_not_regular(&other.lock(), "a symbolic link", &path);
    assert_not_regular(&other.lock_shared(), "a symbolic link", &path);

    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious data\n");
    assert_eq!(mode(&target), 0o600, "the target's mode is unchanged");
    assert_eq!(
        std::fs::read_link(&path).unwrap(),
        target,
        "the link is left"
    );
}

/// A dangling symlink: an error, and nothing is created at its target.
#[test]
fn a_dangling_symlink_is_an_error_and_its_target_is_not_created() {
    let dir = TempDir::new("dangling");
    let target = dir.path().join("would-be-created");
    let lock = dir.lock("dangling");
    let path = lock.path().unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();

    assert_not_regular(&acquire_within_10s(lock), "a symbolic link", &path);
    let mut other = Agent::start("dangling", Some(dir.path()));
    assert_not_regular(&other.lock(), "a symbolic link", &path);
    assert!(
        !target.exists(),
        "the symlink was followed: {} exists",
        target.display()
    );
}

/// A FIFO in the file's place: an error, without hanging (opening a FIFO
/// for reading blocks until a writer comes, unless `O_NONBLOCK`).
#[test]
fn a_planted_fifo_is_an_error_without_hanging() {
    let dir = TempDir::new("fifo");
    let lock = dir.lock("fifo");
    let path = lock.path().unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");

    assert_not_regular(&acquire_within_10s(lock), "a FIFO", &path);
    assert_not_regular(&acquire_within_10s(lock.shared()), "a FIFO", &path);
    let mut other = Agent::start("fifo", Some(dir.path()));
    assert_not_regular(&other.lock(), "a FIFO", &path);
    let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&kind),
        "the FIFO is left"
    );
}

/// A directory in the file's place: an error, and the directory is left.
#[test]
fn a_directory_in_its_place_is_an_error() {
    let dir = TempDir::new("directory");
    let lock = dir.lock("directory");
    let path = lock.path().unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), "x").unwrap();

    assert_not_regular(&acquire_within_10s(lock), "a directory", &path);
    let mut other = Agent::start("directory", Some(dir.path()));
    assert_not_regular(&other.lock(), "a directory", &path);
    assert!(
        path.join("inside").exists(),
        "the directory is left as it was"
    );
}

/// A Unix socket in the file's place (open(2) on it fails with ENXIO): an
/// error, never busy, without hanging.
#[test]
fn a_socket_in_its_place_is_an_error() {
    let dir = TempDir::new("socket");
    let lock = dir.lock("socket");
    let path = lock.path().unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(&path).expect("bind a socket");
    match acquire_within_10s(lock) {
        Reply::Err(_, message) => {
            assert!(message.contains(&path.display().to_string()), "{message}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// ... and of kind `NotRegularFile`, as `ErrorKind::NotRegularFile`
/// documents for sockets, with a message that says what is there.
#[test]
fn a_socket_in_its_place_is_not_a_regular_file() {
    let dir = TempDir::new("socket-kind");
    let lock = dir.lock("socket-kind");
    let path = lock.path().unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(&path).expect("bind a socket");
    assert_not_regular(&acquire_within_10s(lock), "a socket", &path);
}

/// A process finds a lock file's slot again by its directory's identity
/// (two spellings of one directory are one lock). A directory renamed
/// away, or deleted and its inode reused by a new one (as a test's
/// temporary directories often are), must not send a lock under the new
/// name to the old path, which no longer exists.
#[test]
fn a_directory_renamed_away_is_found_under_its_new_name() {
    let dir = TempDir::new("renamed");
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let in_dir = |dir: &Path| {
        lockattr::Lock::new(lockattr::LockName::new("renamed"))
            .dir(common::leak(dir.to_str().unwrap()))
    };
    drop(in_dir(&old).acquire().expect("free"));
    let new = dir.path().join("new");
    std::fs::rename(&old, &new).unwrap();
    let guard = in_dir(&new)
        .acquire()
        .expect("the same file, under its directory's new name");
    assert_eq!(guard.path(), Some(new.join("renamed.lock").as_path()));
}

/// A character device in the file's place: an error, not a lock on it.
#[test]
fn a_device_in_its_place_is_an_error() {
    if !common::require_root("a_device_in_its_place_is_an_error") {
        return;
    }
    let dir = TempDir::new("device");
    let lock = dir.lock("device");
    let path = lock.path().unwrap();
    // The same device as /dev/null (1, 3).
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o644),
        rustix::fs::makedev(1, 3),
    );
    if let Err(errno) = made {
        common::loud(&format!(
            "SKIPPED a_device_in_its_place_is_an_error: mknod: {errno}"
        ));
        return;
    }
    assert_not_regular(&acquire_within_10s(lock), "a character device", &path);
}

#[exclusive("files-missing-dir", dir = "/nonexistent-lockattr-files-dir")]
fn in_missing_dir() -> Result<(), lockattr::Error> {
    Ok(())
}

/// A missing directory is an error (never busy) that names the path and
/// says the directory does not exist.
#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("does-not-exist");
    let lock = lockattr::Lock::new(lockattr::LockName::new("missing"))
        .dir(common::leak(missing.to_str().unwrap()));
    let err = lock.acquire().unwrap_err();
    assert!(!err.is_busy());
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.os_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
    let message = err.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("does not exist"), "{message}");
    assert!(!missing.exists(), "the directory is not created");

    let err = in_missing_dir().unwrap_err();
    assert!(!err.is_busy());
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent-lockattr-files-dir"),
        "{message}"
    );
    assert!(message.contains("does not exist"), "{message}");

    let mut other = Agent::start("missing", Some(&missing));
    match other.lock() {
        Reply::Err(kind, message) => {
            assert_eq!(kind, "Io");
            assert!(message.contains("does not exist"), "{message}");
        }
        reply => panic!("expected an error, got {reply:?}"),
    }
}

// ---------------------------------------- deleted or replaced under a holder

/// A holds; someone deletes the file; B takes the lock on a new file at the
/// path. When A lets go and asks again, it must lock the new file, so it is
/// busy while B holds: two holders never lock two different files.
#[test]
fn a_file_deleted_while_held_is_not_locked_again_by_its_holder() {
    let dir = TempDir::new("deleted");
    let mut a = Agent::start("deleted", Some(dir.path()));
    let mut b = Agent::start("deleted", Some(dir.path()));
    let path = a.path("path");
    assert_eq!(a.lock(), Reply::Held);
    let old = std::fs::metadata(&path).unwrap().ino();
    std::fs::remove_file(&path).unwrap();

    assert_eq!(b.lock(), Reply::Held, "B locks a new file at the path");
    let new = std::fs::metadata(&path).unwrap().ino();
    assert_ne!(old, new);
    a.unlock();
    agent::assert_busy_by(
        &a.lock(),
        b.pid(),
        "A must lock the file the path names now",
    );
    b.unlock();
    assert_eq!(a.lock(), Reply::Held);
    agent::assert_busy_by(&b.lock(), a.pid(), "and the other way round");
}

/// The same when the file is replaced (renamed over) while held.
#[test]
fn a_file_replaced_while_held_is_not_locked_again_by_its_holder() {
    let dir = TempDir::new("replaced");
    let mut a = Agent::start("replaced", Some(dir.path()));
    let mut b = Agent::start("replaced", Some(dir.path()));
    let path = a.path("path");
    assert_eq!(a.lock(), Reply::Held);
    let other = dir.path().join("other");
    std::fs::write(&other, "").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&other, &path).unwrap();

    assert_eq!(b.lock(), Reply::Held, "B locks the replacement");
    a.unlock();
    agent::assert_busy_by(&a.lock(), b.pid(), "A must lock the replacement");
}

/// A process that held the lock before keeps its descriptor open between
/// holds. If the file is deleted or replaced meanwhile and B holds the new
/// one, A's next request must be busy, not a lock on its stale descriptor.
#[test]
fn a_kept_descriptor_of_a_deleted_or_replaced_file_is_not_trusted() {
    for replace in [false, true] {
        let dir = TempDir::new("kept");
        let mut a = Agent::start("kept", Some(dir.path()));
        let mut b = Agent::start("kept", Some(dir.path()));
        let path = a.path("path");
        assert_eq!(a.lock(), Reply::Held);
        a.unlock();
        if replace {
            let other = dir.path().join("other");
            std::fs::write(&other, "").unwrap();
            std::fs::rename(&other, &path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        assert_eq!(b.lock(), Reply::Held);
        let how = if replace { "replaced" } else { "deleted" };
        agent::assert_busy_by(
            &a.lock(),
            b.pid(),
            &format!("A locked its stale descriptor (file {how})"),
        );
    }
}

/// In one process: a guard is held, the file deleted, another process takes
/// the new file; after our guard drops, our next request is busy.
#[test]
fn in_process_holder_follows_the_path_after_deletion() {
    let dir = TempDir::new("deleted-here");
    let lock = dir.lock("here");
    let path = lock.path().unwrap();
    let guard = lock.acquire().expect("free");
    std::fs::remove_file(&path).unwrap();
    let mut b = Agent::start("here", Some(dir.path()));
    assert_eq!(b.lock(), Reply::Held);
    drop(guard);
    agent::assert_busy_by(
        &Reply::of(lock.acquire()),
        b.pid(),
        "we must lock the new file",
    );
}

// ------------------------------------------------------------ mode, no unlink

/// Created 0644 even by a process whose umask is 077, so every user can
/// open it; and never deleted, by holders or when they exit.
#[test]
fn created_0644_under_umask_077_and_never_deleted() {
    let dir = TempDir::new("umask");
    let mut creator = Agent::start_with("umask", Some(dir.path()), |cmd| {
        cmd.env("LOCKATTR_TEST_UMASK", "077");
    });
    assert_eq!(creator.ask("umask"), "UMASK 0077", "the umask is in force");
    let path = creator.path("path");
    assert!(!path.exists());
    assert_eq!(creator.lock(), Reply::Held);
    assert_eq!(mode(&path), 0o644, "created 0644 whatever the umask");
    let inode = std::fs::metadata(&path).unwrap().ino();
    creator.unlock();
    assert!(path.exists(), "not deleted on release");
    drop(creator);
    assert!(path.exists(), "not deleted when the creator exits");

    let mut other = Agent::start("umask", Some(dir.path()));
    assert_eq!(other.lock(), Reply::Held);
    other.kill();
    let lock = dir.lock("umask");
    for _ in 0..3 {
        drop(lock.acquire().expect("free"));
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        inode,
        "the same file all along"
    );
    assert_eq!(mode(&path), 0o644, "its mode is left alone");
}

// ------------------------------------------------------- where the file lives

/// The suite's own rule: every test process, and every child it starts,
/// locks in the run's private directory (a fresh 1777 directory in
/// `$TMPDIR`, pinned with `set_default_dir`), never in `/run/lock`; only a
/// child for which a test sets `LOCKATTR_DIR` follows the default rules.
#[test]
fn this_run_locks_in_its_own_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::lock_dir();
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    assert_ne!(dir, common::host_default_dir());
    let meta = std::fs::metadata(dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o1777,
        "shared like /tmp"
    );
    let name = common::unique_name("own-dir");
    let here = lockattr::lock_path(&name).unwrap();
    assert_eq!(here, dir.join(format!("{name}.lock")));

    let mut agent = Agent::start(&name, None);
    assert_eq!(agent.path("lock-path"), here, "a child locks there too");
    assert_eq!(agent.lock(), Reply::Held);
    agent::assert_busy_by(
        &Reply::of(agent::default_lock(&name).acquire()),
        agent.pid(),
        "the same file",
    );

    let elsewhere = TempDir::new("own-dir-env");
    let mut told = Agent::start_with(&name, None, |cmd| {
        cmd.env("LOCKATTR_DIR", elsewhere.path());
    });
    let there = elsewhere.path().join(format!("{name}.lock"));
    assert_eq!(told.path("lock-path"), there, "LOCKATTR_DIR set by a test");
}

/// Only a test binary that includes `tests/common` gets the run's own
/// directory; one that does not would lock in `/run/lock`, beside every
/// other run on the host. `ui.rs` takes no lock.
#[test]
fn every_test_binary_locks_in_the_runs_directory() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with(".rs") || file == "ui.rs" {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            source.lines().any(|line| line.starts_with("mod common;")),
            "tests/{file} lacks `mod common;`: its locks would go to the host's default \
             directory"
        );
    }
}

/// A test process killed with SIGKILL cannot remove its directory: the
/// next one to make a directory removes it, knowing it by its owner's flock
/// being gone, and leaves those of live processes (this one's) alone.
#[test]
fn a_directory_left_by_a_killed_run_is_removed_by_the_next() {
    let mut killed = Kid::role("own-dir", &[]);
    let left = std::path::PathBuf::from(killed.expect("DIR").0);
    std::fs::write(left.join("inside.lock"), "").unwrap();
    let mut alive = Kid::role("own-dir", &[]);
    let kept = std::path::PathBuf::from(alive.expect("DIR").0);
    killed.kill();
    assert!(!killed.finish().status.success(), "killed");
    assert!(left.is_dir(), "nobody removed it yet");

    let next = lockattr::__private::TestDir::new();
    assert!(!left.exists(), "{} was left behind", left.display());
    assert!(kept.is_dir(), "a live process's directory was removed");
    assert!(
        common::lock_dir().is_dir(),
        "this run's directory was removed"
    );
    let made = next.path().to_owned();
    drop(next);
    assert!(!made.exists(), "removed on drop");
    assert!(alive.finish().status.success());
    assert!(!kept.exists(), "removed by its owner");
}

/// `LOCKATTR_DIR` moves the default directory; `Lock::path` and
/// `lock_path` agree with it and the file is created there.
#[test]
fn lockattr_dir_is_honoured() {
    let dir = TempDir::new("env-dir");
    let name = common::unique_name("env-dir");
    let mut agent = Agent::start_with(&name, None, |cmd| {
        cmd.env("LOCKATTR_DIR", dir.path());
    });
    let expected = dir.path().join(format!("{name}.lock"));
    assert_eq!(agent.path("path"), expected);
    assert_eq!(agent.path("lock-path"), expected);
    assert_eq!(agent.lock(), Reply::Held);
    assert!(expected.is_file(), "created in LOCKATTR_DIR");

    // This process does not follow LOCKATTR_DIR: its file is elsewhere, so
    // the agent's hold does not concern it.
    let here = agent::default_lock(&name);
    assert_ne!(here.path().unwrap(), expected);
    let guard = here.acquire().expect("another file, free");
    assert!(!here.path().unwrap().starts_with(dir.path()));
    drop(guard);
}

/// A relative `LOCKATTR_DIR` is a `Config` error (callers in different
/// working directories would lock different files); an empty one, or none,
/// means the host's default directory: `/run/lock` if it is world-writable
/// and sticky, else `/tmp`. The files made there are removed afterwards.
#[test]
fn lockattr_dir_relative_is_an_error_and_empty_is_the_default() {
    let name = common::unique_name("env-dir-relative");
    let mut agent = Agent::start_with(&name, None, |cmd| {
        cmd.env("LOCKATTR_DIR", "relative/dir");
    });
    match agent.lock() {
        Reply::Err(kind, message) => {
            assert_eq!(kind, "Config", "{message}");
            assert!(message.contains("relative/dir"), "{message}");
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    drop(agent);

    let expected = common::host_default_dir().join(format!("{name}.lock"));
    let _remove = RemoveFile(expected.clone());
    for value in [Some(""), None] {
        let mut agent = Agent::start_with(&name, None, |cmd| {
            cmd.env_remove(common::RUN_DIR_VAR)
                .env_remove("LOCKATTR_DIR");
            if let Some(value) = value {
                cmd.env("LOCKATTR_DIR", value);
            }
        });
        let what = format!("LOCKATTR_DIR={value:?}");
        assert_eq!(agent.path("path"), expected, "{what}");
        assert_eq!(agent.path("lock-path"), expected, "{what}");
        assert_eq!(agent.lock(), Reply::Held, "{what}");
        assert!(
            expected.is_file(),
            "{what}: created in the default directory"
        );
    }
}

/// Removes a file this test made outside the run's directory.
struct RemoveFile(std::path::PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `lock_path(name)` is `DIR/NAME.lock` for the default directory, the file
/// `#[exclusive(NAME)]` locks; a bad name is an error.
#[test]
fn lock_path_names_the_file_the_attribute_locks() {
    let path = lockattr::lock_path("files-lock-path").unwrap();
    assert_eq!(path.file_name().unwrap(), "files-lock-path.lock");
    let lock = lockattr::Lock::new(lockattr::LockName::new("files-lock-path"));
    assert_eq!(lock.path().unwrap(), path);
    let guard = lock.acquire().unwrap();
    assert_eq!(guard.path(), Some(path.as_path()));
    let mut other = Agent::start("files-lock-path", None);
    assert_eq!(other.path("lock-path"), path);
    agent::assert_busy_by(&other.lock(), std::process::id(), "the same file");
    drop(guard);

    let err = lockattr::lock_path("../etc/passwd").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

// ------------------------------------------------------------- LOCKATTR_URL

#[exclusive("files-url")]
fn url_result() -> Result<(), lockattr::Error> {
    Ok(())
}

#[exclusive("files-url-unit")]
fn url_unit() {}

/// `LOCKATTR_URL` set to something this build cannot honour (a scheme it
/// does not know; a build without the `postgres` feature is tested in
/// `tests/postgres.rs`): every lock is a `Config` error, never a silent
/// local lock, and the URL's password is not repeated. A `()` function
/// panics rather than run or skip silently.
#[test]
fn lockattr_url_makes_every_lock_an_error() {
    let dir = TempDir::new("url");
    let url = "redis://deployer:s3cret-pw@127.0.0.1:1/locks";
    // `dir` is their default: empty at the end, no lock fell back to a
    // local file.
    let env = |cmd: &mut std::process::Command| {
        cmd.env("LOCKATTR_URL", url).env("LOCKATTR_DIR", dir.path());
    };
    let mut agent = Agent::start_with("url", None, env);
    for reply in [agent.lock(), agent.lock_shared()] {
        match reply {
            Reply::Err(kind, message) => {
                assert_eq!(kind, "Config", "{message}");
                assert!(message.contains("LOCKATTR_URL"), "{message}");
                assert!(!message.contains("s3cret"), "leaks the password: {message}");
            }
            other => panic!("expected a Config error, got {other:?}"),
        }
    }

    // Also with an explicit directory: no lock falls back to a local file.
    let mut explicit = Agent::start_with("url", Some(dir.path()), env);
    assert!(
        matches!(explicit.lock(), Reply::Err(kind, _) if kind == "Config"),
        "a dir option does not bypass LOCKATTR_URL"
    );

    let mut cmd = common::spawn_role("url-result");
    env(&mut cmd);
    let out = common::output(cmd);
    let stdout = &out.stdout;
    assert!(
        stdout.lines().any(|l| l.starts_with("OUTCOME ERR Config ")),
        "{stdout}"
    );

    let mut cmd = common::spawn_role("url-unit");
    env(&mut cmd);
    let out = common::output(cmd);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(
        !out.status.success(),
        "a () function must not go on: {stdout}"
    );
    assert!(!stdout.contains("OUTCOME"), "{stdout}");
    assert!(stderr.contains("LOCKATTR_URL"), "{stderr}");
    assert!(!stderr.contains("busy"), "not busy: {stderr}");

    let created: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(created.is_empty(), "no local lock file: {created:?}");
}
