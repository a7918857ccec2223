//! Faults never leave a wrong state behind, and their messages say what is
//! wrong: a check that fails after locking releases the lock; one file
//! reached by two spellings is one lock; a holder that cannot be found is
//! said to be unknown or unlisted, not named wrongly; a full file system and
//! an exhausted descriptor table get a hint; errors say the OS error once;
//! and `close_idle` lets go of the kept descriptors.

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use lockattr::{ErrorKind, Holder, Lock, LockName};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        agent::ROLE => agent::serve(),
        // Locks a fresh name in DIR after allowing itself no new descriptor.
        "emfile" => {
            let dir = std::env::var("LOCKATTR_TEST_DIR").unwrap();
            // A new descriptor takes the lowest free number, at least 3 with
            // stdin, stdout and stderr open: a limit of 3 refuses them all.
            let limit = 3;
            let nofile = rustix::process::Resource::Nofile;
            let maximum = rustix::process::getrlimit(nofile).maximum;
            let current = Some(limit);
            rustix::process::setrlimit(nofile, rustix::process::Rlimit { current, maximum })
                .expect("lower RLIMIT_NOFILE");
            let lock = Lock::new(LockName::new("emfile")).dir(common::leak(dir));
            match lock.acquire() {
                Ok(_) => println!("OUTCOME HELD"),
                Err(err) => println!("OUTCOME {:?} {err}", err.kind()),
            }
        }
        "lock-path" => match lockattr::lock_path("faults-path") {
            Ok(path) => println!("OUTCOME PATH {}", path.display()),
            Err(err) => println!("OUTCOME {:?} {err}", err.kind()),
        },
        other => panic!("unknown role {other:?}"),
    }
}

fn outcome(output: &common::Finished) -> String {
    output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("OUTCOME "))
        .unwrap_or_else(|| panic!("no outcome: {output:?}"))
        .to_owned()
}

// ------------------------------------------------- a failed check releases

/// A process keeps its descriptor between holds. When the check after
/// locking fails with an error (here ELOOP: the directory's name became a
/// symlink loop), the lock must be let go before the error is returned, or
/// every other process would find it busy for as long as this one lives.
#[test]
fn a_check_that_fails_after_locking_lets_go() {
    let dir = TempDir::new("check-fails");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut a = Agent::start("check", Some(&sub));
    assert_eq!(a.lock(), Reply::Held);
    a.unlock(); // the descriptor stays open in A

    let moved = dir.path().join("moved");
    std::fs::rename(&sub, &moved).unwrap();
    symlink("sub", &sub).unwrap(); // sub -> sub: every look-up through it loops

    match a.lock() {
        Reply::Err(kind, message) => {
            assert_eq!(kind, "Io", "{message}");
            assert!(message.contains("cannot check"), "{message}");
        }
        other => panic!("expected the check to fail, got {other:?}"),
    }
    // The file A still has open is moved/check.lock: free for B.
    let mut b = Agent::start("check", Some(&moved));
    assert_eq!(
        b.lock(),
        Reply::Held,
        "A kept the lock after its check failed"
    );
}

// ----------------------------------------------- two spellings, one lock

/// `dir = "/var/run/lock"` beside the default `/run/lock` (or any symlinked
/// directory): one file, so one lock in this process. A nested call through
/// the other spelling re-enters, also with `wait` (it would hang if it were
/// a second lock), while another thread finds it busy.
#[test]
fn one_file_through_two_directory_spellings_is_one_lock() {
    let dir = TempDir::new("spellings");
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    symlink(&real, &link).unwrap();
    let name = LockName::new("spelled");
    let by_real = Lock::new(name).dir(common::leak(real.to_str().unwrap()));
    let by_link = Lock::new(name).dir(common::leak(link.to_str().unwrap()));

    let outer = by_real.acquire().expect("free");
    let (tx, rx) = std::sync::mpsc::channel();
    let (tid_tx, tid) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tid_tx.send(common::tid()).unwrap();
        let _ = tx.send(
            by_link
                .wait()
                .acquire()
                .map(|inner| inner.path().map(ToOwned::to_owned)),
        );
    });
    // Another thread: busy for it, whichever spelling it uses; it waits, and
    // must still be waiting while we hold.
    common::until_threads_sleep(&[tid.recv().unwrap()]);
    assert!(
        rx.try_recv().is_err(),
        "another thread got the lock while this one held it"
    );
    let nested = by_link
        .acquire()
        .expect("nested through the other spelling re-enters");
    let nested_waiting = by_link
        .wait_for(std::time::Duration::from_secs(5))
        .acquire()
        .expect("and with a wait, at once (two locks would wait in vain)");
    assert_eq!(nested.path(), outer.path());
    drop((nested_waiting, nested, outer));
    let other = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the other thread got it once we let go")
        .expect("and without an error");
    assert_eq!(other, Some(real.join("spelled.lock")));
}

// ------------------------------------------------------ unknown holders

/// A holder in another pid namespace is not named (the kernel lists it as
/// pid 0 there): the busy error says it is not listed, never "pid 0".
#[test]
fn a_holder_outside_our_pid_namespace_is_unlisted() {
    let test = "a_holder_outside_our_pid_namespace_is_unlisted";
    if !common::require_root(test) || !common::require_command(test, "unshare") {
        return;
    }
    let dir = TempDir::new("pidns");
    let mut holder = Agent::start("pidns", Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    // The agent, started in a new pid namespace with its own /proc.
    let mut agent = Agent::start_with("pidns", Some(dir.path()), |cmd| {
        wrap(
            cmd,
            &["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"],
        );
    });
    match agent.ask("lock").as_str() {
        "BUSY ?" => {}
        other => panic!("expected busy with no holder named, got {other}"),
    }
    // Unlisted, not Unknown: the agent can read its /proc/locks, which
    // lists the holder as pid 0.
    let reply = agent.ask("lock-message");
    assert!(reply.starts_with("BUSY "), "{reply}");
    if common::NAMES_OTHER_PROCESSES {
        assert!(
            reply.contains("another process that the lock table (/proc/locks"),
            "says the holder is unlisted: {reply}"
        );
        assert!(!reply.contains("unknown"), "{reply}");
    } else {
        assert!(reply.contains(common::UNKNOWN_HOLDER), "{reply}");
    }
    assert!(!reply.contains("pid 0"), "names pid 0: {reply}");
    assert!(
        !reply.contains(&format!("pid {}", holder.pid())),
        "names a pid from outside its namespace: {reply}"
    );
}

/// Without `/proc`, the holder cannot be looked up: busy says "unknown".
#[test]
fn without_proc_the_holder_is_unknown() {
    let test = "without_proc_the_holder_is_unknown";
    if !common::require_root(test) || !common::require_command(test, "unshare") {
        return;
    }
    let dir = TempDir::new("noproc");
    let mut holder = Agent::start("noproc", Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    let mut agent = agent_in_mount_namespace("umount -l /proc", "noproc", dir.path());
    assert_eq!(
        agent.ask("proc"),
        "PROC absent",
        "the agent still sees /proc"
    );
    let reply = agent.ask("lock-message");
    assert!(reply.starts_with("BUSY "), "{reply}");
    assert!(
        reply.contains("unknown"),
        "says the holder is unknown: {reply}"
    );
    assert!(!reply.contains("does not list"), "{reply}");
}

/// An agent for `name` in `dir`, started in a new mount namespace after
/// `setup` (a shell command) ran there.
fn agent_in_mount_namespace(setup: &str, name: &str, dir: &Path) -> Agent {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"])
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(std::env::current_exe().unwrap())
        .args(common::spawn_role(agent::ROLE).get_args());
    Agent::from_command(cmd, name, Some(dir))
}

/// Runs `cmd` under `prefix` (e.g. `unshare ...`), keeping its environment.
fn wrap(cmd: &mut Command, prefix: &[&str]) {
    let exe = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = Command::new(prefix[0]);
    wrapped.args(&prefix[1..]).arg(exe).args(args);
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    *cmd = wrapped;
}

#[test]
fn holders_that_cannot_be_named_say_why() {
    assert!(Holder::Unknown.to_string().contains("unknown"));
    assert!(Holder::Unlisted.to_string().contains("does not list"));
    assert_eq!(Holder::Unknown.pid(), None);
}

// ------------------------------------------------------------- hints

/// Out of descriptors: EMFILE says so, with the limit and what to do.
#[test]
fn emfile_has_a_hint() {
    let dir = TempDir::new("emfile");
    let mut cmd = common::spawn_role("emfile");
    cmd.env("LOCKATTR_TEST_DIR", dir.path());
    let outcome = outcome(&common::output(cmd));
    assert!(outcome.starts_with("Io "), "{outcome}");
    assert!(outcome.contains("Too many open files"), "{outcome}");
    assert!(outcome.contains("RLIMIT_NOFILE"), "{outcome}");
    assert!(outcome.contains("ulimit -n"), "{outcome}");
}

/// A full file system (a tmpfs with no inode left): ENOSPC says so.
#[test]
fn enospc_has_a_hint() {
    let test = "enospc_has_a_hint";
    if !common::require_root(test) || !common::require_command(test, "unshare") {
        return;
    }
    let dir = TempDir::new("enospc");
    let full = format!(
        "mount -t tmpfs -o size=64k,nr_inodes=1 none '{}'",
        dir.path().display()
    );
    let mut agent = agent_in_mount_namespace(&full, "full", dir.path());
    match agent.lock() {
        Reply::Err(kind, message) => {
            assert_eq!(kind, "Io", "{message}");
            assert!(message.contains("No space left on device"), "{message}");
            assert!(
                message.contains("no space, inodes or quota left"),
                "{message}"
            );
        }
        other => panic!("expected ENOSPC, got {other:?}"),
    }
}

// ------------------------------------------------------- said once

/// The OS error is in the message once, also through anyhow's chain.
#[test]
fn the_os_error_is_said_once() {
    let err = Lock::new(LockName::new("once"))
        .dir("/nonexistent-lockattr-faults-dir")
        .acquire()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(std::error::Error::source(&err).is_none());
    let chain = format!("{:#}", anyhow::Error::from(err).context("deploying"));
    assert_eq!(
        chain.matches("No such file or directory").count(),
        1,
        "{chain}"
    );
    assert!(chain.starts_with("deploying: cannot "), "{chain}");
}

/// A lock given by its path is named by its path once, not as a name too.
#[test]
fn a_path_lock_is_named_by_its_file_once() {
    let dir = TempDir::new("path-lock");
    let path = dir.path().join("by-path.lock");
    let lock = Lock::at_path(common::leak(path.to_str().unwrap()));
    let _held = lock.acquire().unwrap();
    let err = std::thread::spawn(move || lock.acquire().map(drop))
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.lock_name(), None);
    assert_eq!(err.path(), Some(path.as_path()));
    let text = err.to_string();
    assert_eq!(text.matches(&*path.to_string_lossy()).count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("lock file {} is busy", path.display())),
        "{text}"
    );
}

/// `lock_path` with a relative `LOCKATTR_DIR` names the lock it was asked
/// for, and the directory that is wrong.
#[test]
fn lock_path_with_a_relative_dir_names_the_lock() {
    let mut cmd = common::spawn_role("lock-path");
    cmd.env("LOCKATTR_DIR", "relative/locks");
    let outcome = outcome(&common::output(cmd));
    assert!(outcome.starts_with("Config "), "{outcome}");
    assert!(outcome.contains("lock \"faults-path\""), "{outcome}");
    assert!(outcome.contains("relative/locks"), "{outcome}");
}

// ----------------------------------------------------------- close_idle

/// A lock file's descriptor stays open between holds until `close_idle`;
/// a lock held at that moment keeps its own.
#[test]
fn close_idle_closes_kept_descriptors_of_idle_locks_only() {
    let dir = TempDir::new("close-idle");
    let idle = dir.lock("idle");
    let held = dir.lock("held");
    let idle_path = idle.path().unwrap();
    let held_path = held.path().unwrap();
    drop(idle.acquire().unwrap());
    let guard = held.acquire().unwrap();
    assert_eq!(common::descriptors_on(&idle_path), 1, "kept between holds");
    lockattr::close_idle();
    assert_eq!(
        common::descriptors_on(&idle_path),
        0,
        "closed by close_idle"
    );
    assert_eq!(
        common::descriptors_on(&held_path),
        1,
        "a held lock keeps its descriptor"
    );
    let mut other = Agent::start("held", Some(dir.path()));
    agent::assert_busy_by(&other.lock(), std::process::id(), "and stays held");
    drop(guard);
    drop(idle.acquire().expect("the next hold opens the file again"));
}

/// A directory removed leaves its inode number free for the next one: a
/// lock in the new directory must not be taken for the old one's.
#[test]
fn a_new_directory_with_a_reused_inode_is_a_new_lock() {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = std::collections::HashSet::new();
    let mut reused = false;
    for round in 0..50 {
        let dir = TempDir::new("reused");
        reused |= !inodes.insert(std::fs::metadata(dir.path()).unwrap().ino());
        let lock = dir.lock("reused");
        let guard = lock.acquire().expect("a fresh directory's lock is free");
        let want = dir.path().join("reused.lock");
        assert_eq!(guard.path(), Some(want.as_path()), "round {round}");
        assert!(
            want.exists(),
            "round {round}: the lock file is in the new directory"
        );
    }
    if !reused {
        common::loud("note: no inode was reused in 50 rounds; the check ran without its trigger");
    }
}
