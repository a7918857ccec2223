//! Everyone must reach the same file. Two silent splits, and the cure: a
//! caller with `LOCKATTR_DIR` set beside one without, and the `/tmp`
//! fallback inside a service with a private `/tmp` (systemd's
//! `PrivateTmp=yes`, simulated with `unshare --mount`). A program that pins
//! its directory with `lockattr::set_default_dir` is not split by either.

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use lockattr::{ErrorKind, Lock, LockName};
use std::path::{Path, PathBuf};
use std::process::Command;

const PIN: &str = "LOCKATTR_TEST_PIN";

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        agent::ROLE => {
            if let Ok(pin) = std::env::var(PIN) {
                lockattr::set_default_dir(&pin).expect("pin the directory");
            }
            agent::serve()
        }
        "pin-late" => pin_late(),
        other => panic!("unknown role {other:?}"),
    }
}

/// A directory visible in every mount namespace these tests make, with a
/// copy of this test binary in it: under `/run`, not `/tmp`, which some of
/// them replace (and which may hold the checkout, and so this binary).
/// Root only; removed when dropped.
struct Shared(PathBuf);

impl Shared {
    fn new(tag: &str) -> Shared {
        use std::os::unix::fs::PermissionsExt;
        let dir = Path::new("/run").join(common::unique_name(tag));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::copy(std::env::current_exe().unwrap(), dir.join("places-test")).unwrap();
        Shared(dir)
    }

    fn exe(&self) -> PathBuf {
        self.0.join("places-test")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One caller with `LOCKATTR_DIR` pointing elsewhere locks another file:
/// the split. The same caller with the program's directory pinned is not
/// split: `LOCKATTR_DIR` cannot override `set_default_dir`.
#[test]
fn lockattr_dir_splits_callers_unless_the_program_pins_its_directory() {
    let ours = TempDir::new("pinned");
    let elsewhere = TempDir::new("elsewhere");
    let name = common::unique_name("pin");
    let mut holder = Agent::start_with(&name, None, |cmd| {
        cmd.env_remove(common::RUN_DIR_VAR).env(PIN, ours.path());
    });
    assert_eq!(
        holder.path("path"),
        ours.path().join(format!("{name}.lock"))
    );
    assert_eq!(holder.lock(), Reply::Held);

    let mut split = Agent::start_with(&name, None, |cmd| {
        cmd.env("LOCKATTR_DIR", elsewhere.path());
    });
    assert_eq!(
        split.lock(),
        Reply::Held,
        "the split: another file, no exclusion"
    );

    let mut pinned = Agent::start_with(&name, None, |cmd| {
        cmd.env("LOCKATTR_DIR", elsewhere.path())
            .env(PIN, ours.path());
    });
    agent::assert_busy_by(&pinned.lock(), holder.pid(), "pinned despite LOCKATTR_DIR");
}

/// Pinning after the first lock settled the directory on another one is
/// an error, never a silent second directory. In a child of its own: the
/// test process's directory is pinned before `main`.
#[test]
fn pinning_too_late_is_an_error() {
    let first = TempDir::new("first");
    let later = TempDir::new("later");
    let mut cmd = common::spawn_role("pin-late");
    cmd.env_remove(common::RUN_DIR_VAR)
        .env("LOCKATTR_TEST_FIRST", first.path())
        .env("LOCKATTR_TEST_LATER", later.path());
    let out = common::output(cmd);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "REFUSED"), "{out:?}");
}

fn pin_late() {
    let first = PathBuf::from(std::env::var("LOCKATTR_TEST_FIRST").unwrap());
    let later = PathBuf::from(std::env::var("LOCKATTR_TEST_LATER").unwrap());
    lockattr::set_default_dir(&first).expect("the first pin");
    lockattr::set_default_dir(&first).expect("the same pin again is fine");
    drop(
        Lock::new(LockName::new("pin-late"))
            .acquire()
            .expect("a lock"),
    );
    let err = lockattr::set_default_dir(&later).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(text.contains(&first.display().to_string()), "{text}");
    assert!(text.contains("before the first lock"), "{text}");
    let relative = lockattr::set_default_dir("relative/dir").unwrap_err();
    assert_eq!(relative.kind(), ErrorKind::Config);
    println!("REFUSED");
}

/// Where `/run/lock` is missing the default is `/tmp`, and a service with
/// a private `/tmp` locks a file nobody else sees: both hold "the" lock. A
/// directory every caller sees, pinned, excludes them again.
#[test]
fn a_private_tmp_splits_the_tmp_fallback_unless_pinned() {
    let test = "a_private_tmp_splits_the_tmp_fallback_unless_pinned";
    if !common::require_root(test) || !common::require_command(test, "unshare") {
        return;
    }
    let name = common::unique_name("privtmp");
    let shared = Shared::new("privtmp");
    // Both callers: no /run/lock they may use, so the default is /tmp.
    let no_run_lock = "mount -t tmpfs -o mode=0755 none /run/lock";
    let in_namespace = |setup: &str, pin: Option<&Path>| in_namespace(&shared, setup, &name, pin);
    let mut host = in_namespace(no_run_lock, None);
    let host_file = PathBuf::from(format!("/tmp/{name}.lock"));
    let _remove = RemoveFile(host_file.clone());
    assert_eq!(host.path("path"), host_file);
    assert_eq!(host.lock(), Reply::Held);

    let private_tmp = format!("{no_run_lock} && mount -t tmpfs none /tmp");
    let mut service = in_namespace(&private_tmp, None);
    assert_eq!(service.path("path"), host_file, "the same path...");
    assert_eq!(
        service.lock(),
        Reply::Held,
        "...but its own /tmp: the split"
    );

    let mut host_pinned = in_namespace(no_run_lock, Some(&shared.0));
    assert_eq!(host_pinned.lock(), Reply::Held);
    let mut service_pinned = in_namespace(&private_tmp, Some(&shared.0));
    agent::assert_busy_by(
        &service_pinned.lock(),
        host_pinned.pid(),
        "pinned to a directory both see",
    );
}

/// Removes a file made in the host's `/tmp`, also when the test fails.
struct RemoveFile(PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An agent for `name` (default directory, or `pin`) in a new mount
/// namespace prepared by `setup`, run from `shared`'s copy of this binary.
/// Its pid is that of `unshare`, which execs the shell, which execs the
/// agent: one process.
fn in_namespace(shared: &Shared, setup: &str, name: &str, pin: Option<&Path>) -> Agent {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"])
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(shared.exe())
        .args(common::spawn_role(agent::ROLE).get_args())
        .env_remove(common::RUN_DIR_VAR)
        .env_remove("LOCKATTR_DIR");
    if let Some(pin) = pin {
        cmd.env(PIN, pin);
    }
    Agent::from_command(cmd, name, None)
}
