//! Several real users and the real `fs.protected_regular` sysctl: root and
//! ordinary users share one lock file in a sticky world-writable directory,
//! in either order, whatever the creator's umask.
//!
//! Needs root (useradd, runuser, writing /proc/sys); without it every test
//! prints a loud SKIPPED line. The users `lockattr-t1` to `lockattr-t3` are
//! created when missing and left in place. Every participant is a child
//! process (this binary, run as root or through `runuser`) whose lock
//! directory comes from `LOCKATTR_DIR`, as an operator would set it.
//!
//! `fs.protected_regular` belongs to the whole host: a test changes it only
//! while it holds an flock on the sysctl's own file, taken with lockattr,
//! so that the tests of this file and those of another run on the host
//! take turns; the old value is put back before the lock is let go.

mod common;

use common::Kid;
use lockattr::{Lock, LockName, exclusive};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const USERS: LockName = LockName::new("users");
const LOCK_FILE: &str = "users.lock";

const BUSY: i32 = 10;
const FAILED: i32 = 11;

// Open flags for the raw `open(2)` probes, by name so a child can be told.
const RDWR_CREAT: &str = "rdwr,creat";
const RDONLY_CREAT: &str = "rdonly,creat";
const RDWR: &str = "rdwr";
const RDONLY: &str = "rdonly";

// ---------------------------------------------------------------- children

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    if let Some(mask) = var("LOCKATTR_TEST_UMASK") {
        let mask = Mode::from_raw_mode(u32::from_str_radix(&mask, 8).expect("an octal umask"));
        rustix::process::umask(mask);
        // Read it back, so the parent sees the umask really was in force.
        let now = rustix::process::umask(mask);
        println!("UMASK {:04o}", now.bits());
    }
    let code = match role.as_str() {
        "hold" => report(hold_role(), Some("RELEASED")),
        "try" => report(try_role(), None),
        "plant" => plant_role(),
        "open" => open_role(),
        "lock-path" => match lockattr::lock_path(USERS.as_str()) {
            Ok(path) => {
                println!("PATH {}", path.display());
                0
            }
            Err(err) => {
                println!("FAILED {err}");
                FAILED
            }
        },
        "churn" => churn_role(),
        other => panic!("unknown role {other:?}"),
    };
    std::io::stdout().flush().expect("flush stdout");
    std::process::exit(code);
}

/// Holds the lock until the parent writes a line or closes the pipe (as it
/// does when it dies).
#[exclusive(USERS)]
fn hold_role() -> Result<(), lockattr::Error> {
    println!("READY");
    println!("PID {}", std::process::id());
    let _ = std::io::stdin().read_line(&mut String::new());
    Ok(())
}

#[exclusive(USERS)]
fn try_role() -> Result<(), lockattr::Error> {
    println!("LOCKED");
    Ok(())
}

fn report(result: Result<(), lockattr::Error>, done: Option<&str>) -> i32 {
    match result {
        Ok(()) => {
            if let Some(done) = done {
                println!("{done}");
            }
            0
        }
        Err(err) if err.is_busy() => {
            println!("BUSY {err}");
            BUSY
        }
        Err(err) => {
            println!("FAILED {:?}: {err}", err.kind());
            FAILED
        }
    }
}

/// Takes and lets go of a fresh lock file for `LOCKATTR_TEST_SECS`, over
/// and over; with `LOCKATTR_TEST_REMOVE` it removes the file each time, so
/// that the next turn creates it again. Prints `COUNTS <turns> <opened
/// another's file> <errors>` and the first few errors.
fn churn_role() -> i32 {
    let secs: u64 = var("LOCKATTR_TEST_SECS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let remove = var("LOCKATTR_TEST_REMOVE").is_some();
    let lock = Lock::new(LockName::new("churn"));
    let me = rustix::process::getuid().as_raw();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let (mut turns, mut theirs, mut errors) = (0u64, 0u64, 0u64);
    while std::time::Instant::now() < deadline {
        turns += 1;
        match lock.acquire() {
            Ok(guard) => {
                let path = guard.path().expect("a lock file").to_owned();
                if std::fs::metadata(&path).is_ok_and(|meta| meta.uid() != me) {
                    theirs += 1;
                }
                drop(guard);
                if remove {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(err) if err.is_busy() => theirs += 1,
            Err(err) => {
                errors += 1;
                if errors <= 5 {
                    println!("ERROR {err}");
                }
            }
        }
    }
    println!("COUNTS {turns} {theirs} {errors}");
    0
}

/// Creates a file with an exact mode, as a careless tool of this user would.
fn plant_role() -> i32 {
    let path = var("LOCKATTR_TEST_PATH").expect("LOCKATTR_TEST_PATH");
    let mode = var("LOCKATTR_TEST_MODE").expect("LOCKATTR_TEST_MODE");
    let mode = Mode::from_raw_mode(u32::from_str_radix(&mode, 8).expect("an octal mode"));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let fd = rustix::fs::open(&path, flags, mode).expect("create the planted file");
    rustix::fs::fchmod(&fd, mode).expect("chmod the planted file");
    println!("PLANTED");
    0
}

/// One raw open(2), to see what the kernel itself allows this user.
fn open_role() -> i32 {
    let path = var("LOCKATTR_TEST_PATH").expect("LOCKATTR_TEST_PATH");
    let flags = var("LOCKATTR_TEST_FLAGS").expect("LOCKATTR_TEST_FLAGS");
    match raw_open(Path::new(&path), &flags) {
        Ok(()) => println!("OPENED"),
        Err(errno) => println!("ERRNO {}", errno.raw_os_error()),
    }
    0
}

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn raw_open(path: &Path, flags: &str) -> Result<(), Errno> {
    let mut oflags = OFlags::CLOEXEC | OFlags::NOFOLLOW;
    for flag in flags.split(',') {
        oflags |= match flag {
            "rdonly" => OFlags::RDONLY,
            "rdwr" => OFlags::RDWR,
            "creat" => OFlags::CREATE,
            other => panic!("unknown open flag {other:?}"),
        };
    }
    rustix::fs::open(path, oflags, Mode::from_raw_mode(0o644)).map(drop)
}

// ------------------------------------------------------------------- tests

/// The trap itself, raw: with protected_regular on, an `O_CREAT` open of
/// another user's file in a sticky directory is EACCES even for root and even
/// read-only, while a plain read-only open is allowed. Level 0 is the control
/// that shows it is the sysctl that bites; a group-writable sticky directory
/// shows what level 2 adds.
#[test]
fn protected_regular_makes_o_creat_on_a_foreign_file_eacces() {
    if !common::require_root("protected_regular_makes_o_creat_on_a_foreign_file_eacces") {
        return;
    }
    let sysctl = ProtectedRegular::take();
    let scratch = Scratch::new("raw");
    let [t1, _, t3] = users();

    // The blog's case: a user's 0666 file in a root-owned 1777 directory.
    let user_file = scratch.dir.join("user-file");
    plant(&scratch, t1, &user_file, 0o666);
    // The same file in a group-writable sticky directory (01770 root:t1).
    let group_dir = scratch.subdir("group", 0o1770, 0, t1.gid);
    let group_file = group_dir.join("user-file");
    plant(&scratch, t1, &group_file, 0o666);
    // Root's file in a sticky directory that a third user owns: the kernel
    // exempts files owned by the directory's owner, so in a root-owned
    // directory a user's open of root's file is never refused this way.
    let t3_dir = scratch.subdir("t3", 0o1777, t3.uid, t3.gid);
    let root_file = t3_dir.join("root-file");
    std::fs::write(&root_file, "").expect("create root's file");
    std::fs::set_permissions(&root_file, PermissionsExt::from_mode(0o644)).expect("chmod 0644");

    let eacces = Err(Errno::ACCESS);
    for level in [0, 1, 2] {
        sysctl.set(level);
        let on = level > 0;
        let expect = |refused: bool| if refused { eacces } else { Ok(()) };
        let case = |what: &str| format!("fs.protected_regular={level}: {what}");

        let got = raw_open(&user_file, RDWR_CREAT);
        assert_eq!(
            got,
            expect(on),
            "{}",
            case("root, O_RDWR|O_CREAT, user's file in 1777")
        );
        let got = raw_open(&user_file, RDONLY_CREAT);
        assert_eq!(
            got,
            expect(on),
            "{}",
            case("root, O_RDONLY|O_CREAT, user's file in 1777")
        );
        let got = raw_open(&user_file, RDONLY);
        assert_eq!(
            got,
            Ok(()),
            "{}",
            case("root, O_RDONLY, user's file in 1777")
        );
        let got = raw_open(&group_file, RDWR_CREAT);
        let refused = level == 2;
        assert_eq!(
            got,
            expect(refused),
            "{}",
            case("root, O_RDWR|O_CREAT, user's file in 1770")
        );

        let probe = |flags| probe_open(&scratch, t1, &root_file, flags);
        let got = probe(RDONLY_CREAT);
        let what = "lockattr-t1, O_RDONLY|O_CREAT, root's file in t3's 1777";
        assert_eq!(got, expect(on), "{}", case(what));
        let got = probe(RDONLY);
        assert_eq!(
            got,
            Ok(()),
            "{}",
            case("lockattr-t1, O_RDONLY, root's file in t3's 1777")
        );

        // Not asserted, as lockattr never opens for writing: the kernel
        // checks only O_CREAT opens, so root may open the file read-write.
        let rdwr = raw_open(&user_file, RDWR);
        eprintln!(
            "observed: {}: {rdwr:?}",
            case("root, O_RDWR, user's file in 1777")
        );
    }
}

/// Root after a user, level 1, in a root-owned 1777 directory (as /tmp):
/// root's O_CREAT would be EACCES, yet lockattr reports busy, then locks.
#[test]
fn root_after_user_protected_regular_1() {
    if !common::require_root("root_after_user_protected_regular_1") {
        return;
    }
    root_after_user(1, None);
}

#[test]
fn root_after_user_protected_regular_2() {
    if !common::require_root("root_after_user_protected_regular_2") {
        return;
    }
    root_after_user(2, None);
}

/// What level 2 adds: the same in a group-writable sticky directory
/// (01770, group of the user), where level 1 does not restrict.
#[test]
fn root_after_user_in_group_writable_sticky_dir_protected_regular_2() {
    if !common::require_root("root_after_user_in_group_writable_sticky_dir_protected_regular_2") {
        return;
    }
    root_after_user(2, Some(0o1770));
}

#[test]
fn user_after_root_protected_regular_1() {
    if !common::require_root("user_after_root_protected_regular_1") {
        return;
    }
    user_after_root(1);
}

#[test]
fn user_after_root_protected_regular_2() {
    if !common::require_root("user_after_root_protected_regular_2") {
        return;
    }
    user_after_root(2);
}

/// A creator with umask 077 still leaves a 0644 file: a second user is busy
/// while it holds, then takes it; a third user (and root) is busy while the
/// second holds, then takes it.
#[test]
fn umask_077_creator_still_shares_the_file_with_other_users() {
    if !common::require_root("umask_077_creator_still_shares_the_file_with_other_users") {
        return;
    }
    let sysctl = ProtectedRegular::take();
    sysctl.set(2);
    let scratch = Scratch::new("umask");
    let dir = scratch.dir.clone();
    let file = dir.join(LOCK_FILE);
    let [t1, t2, t3] = users();

    let first = hold(&scratch, &dir, Some(t1), &[("LOCKATTR_TEST_UMASK", "077")]);
    assert!(
        first.before_ready.iter().any(|line| line == "UMASK 0077"),
        "the creator's umask was not 077: {:?}",
        first.before_ready
    );
    assert_file(
        &file,
        t1.uid,
        0o644,
        "created by lockattr-t1 with umask 077",
    );
    attempt(&scratch, &dir, Some(t2)).busy(first.pid, "lockattr-t2 while lockattr-t1 holds");
    first.release();

    let second = hold(&scratch, &dir, Some(t2), &[]);
    attempt(&scratch, &dir, Some(t3)).busy(second.pid, "lockattr-t3 while lockattr-t2 holds");
    attempt(&scratch, &dir, None).busy(second.pid, "root while lockattr-t2 holds");
    second.release();

    attempt(&scratch, &dir, Some(t3)).locked("lockattr-t3 after lockattr-t2 let go");
    assert_file(&file, t1.uid, 0o644, "after three users locked it");
}

/// A lock file planted by user A with mode 0600: user B gets an error, not
/// busy, that names the owner's uid and the mode and says to chmod 0644.
/// Root, which may read any file, still locks it.
#[test]
fn unreadable_lock_file_is_an_error_with_an_owner_and_chmod_hint() {
    if !common::require_root("unreadable_lock_file_is_an_error_with_an_owner_and_chmod_hint") {
        return;
    }
    let sysctl = ProtectedRegular::take();
    sysctl.set(1);
    let scratch = Scratch::new("hint");
    let dir = scratch.dir.clone();
    let file = dir.join(LOCK_FILE);
    let [t1, t2, _] = users();

    plant(&scratch, t1, &file, 0o600);
    assert_file(&file, t1.uid, 0o600, "planted by lockattr-t1");

    let failed = attempt(&scratch, &dir, Some(t2));
    let message = failed.failed("lockattr-t2 on lockattr-t1's 0600 file");
    for needle in [
        "FAILED Io:".to_owned(),
        file.display().to_string(),
        "Permission denied".to_owned(),
        format!("owned by uid {} with mode 0600", t1.uid),
        format!("uid {} cannot read it", t2.uid),
        format!("chmod 0644 {}", file.display()),
    ] {
        assert!(
            message.contains(&needle),
            "the error lacks {needle:?}: {message}"
        );
    }
    assert!(
        !message.contains("busy"),
        "a permission problem reported as busy: {message}"
    );

    attempt(&scratch, &dir, None).locked("root on lockattr-t1's 0600 file");
    assert_file(
        &file,
        t1.uid,
        0o600,
        "after the attempts: lockattr never changes another user's file",
    );
}

fn root_after_user(level: u8, group_dir_mode: Option<u32>) {
    let sysctl = ProtectedRegular::take();
    sysctl.set(level);
    let scratch = Scratch::new("root-after-user");
    let [t1, _, _] = users();
    let dir = match group_dir_mode {
        Some(mode) => scratch.subdir("group", mode, 0, t1.gid),
        None => scratch.dir.clone(),
    };
    let file = dir.join(LOCK_FILE);

    let user = hold(&scratch, &dir, Some(t1), &[]);
    assert_file(&file, t1.uid, 0o644, "created by lockattr-t1");
    // What a naive root would do, and the kernel refuses.
    let naive = raw_open(&file, RDWR_CREAT);
    assert_eq!(
        naive,
        Err(Errno::ACCESS),
        "fs.protected_regular={level} did not bite root's O_CREAT"
    );

    let busy = attempt(&scratch, &dir, None).busy(user.pid, "root while lockattr-t1 holds");
    assert!(
        busy.contains(&file.display().to_string()),
        "the busy message lacks the file: {busy}"
    );
    user.release();
    attempt(&scratch, &dir, None).locked("root after lockattr-t1 let go");

    // Root holding the user's file excludes the user in turn.
    let root = hold(&scratch, &dir, None, &[]);
    attempt(&scratch, &dir, Some(t1)).busy(root.pid, "lockattr-t1 while root holds its file");
    root.release();
    attempt(&scratch, &dir, Some(t1)).locked("lockattr-t1 after root let go");
    assert_file(
        &file,
        t1.uid,
        0o644,
        "after root locked it: never replaced or chowned",
    );
}

fn user_after_root(level: u8) {
    let sysctl = ProtectedRegular::take();
    sysctl.set(level);
    let scratch = Scratch::new("user-after-root");
    let [t1, t2, t3] = users();
    // A sticky directory owned by a third user, so the sysctl covers the
    // users' opens of root's file too (the kernel exempts files owned by
    // the directory's owner, and in /tmp that is root).
    let dir = scratch.subdir("t3", 0o1777, t3.uid, t3.gid);
    let file = dir.join(LOCK_FILE);

    let root = hold(&scratch, &dir, None, &[]);
    assert_file(&file, 0, 0o644, "created by root");
    let probe = probe_open(&scratch, t1, &file, RDONLY_CREAT);
    assert_eq!(
        probe,
        Err(Errno::ACCESS),
        "fs.protected_regular={level} did not bite the user's O_CREAT"
    );

    attempt(&scratch, &dir, Some(t1)).busy(root.pid, "lockattr-t1 while root holds");
    attempt(&scratch, &dir, Some(t2)).busy(root.pid, "lockattr-t2 while root holds");
    root.release();
    attempt(&scratch, &dir, Some(t1)).locked("lockattr-t1 after root let go");

    let user = hold(&scratch, &dir, Some(t1), &[]);
    attempt(&scratch, &dir, None).busy(user.pid, "root while lockattr-t1 holds root's file");
    user.release();
    attempt(&scratch, &dir, Some(t2)).locked("lockattr-t2 after lockattr-t1 let go");
    assert_file(&file, 0, 0o644, "after users locked it");
}

// ------------------------------------------------- a new file's first mode

/// A new lock file is published only with its final mode: no other user
/// ever finds it private (0600 under the creator's umask 077) and fails to
/// open it. Root creates the file over and over (it removes it after each
/// turn, as nobody should), under umask 077, while a user opens it over
/// and over, also under 077: no error at all, and the user did meet root's
/// files many times. (With `O_CREAT` then `fchmod`, such a loop fails about
/// once in seven tries.)
#[test]
fn a_new_lock_file_is_never_seen_with_a_private_mode() {
    if !common::require_root("a_new_lock_file_is_never_seen_with_a_private_mode") {
        return;
    }
    let scratch = Scratch::new("first-mode");
    let [t1, _, _] = users();
    let dir = scratch.dir.clone();
    let secs = ("LOCKATTR_TEST_SECS", "3");
    let umask = ("LOCKATTR_TEST_UMASK", "077");
    let root = Kid::start(command(
        &scratch,
        &dir,
        None,
        "churn",
        &[secs, umask, ("LOCKATTR_TEST_REMOVE", "1")],
    ));
    let user = Kid::start(command(&scratch, &dir, Some(t1), "churn", &[secs, umask]));
    let counts = |kid: Kid, who: &str| {
        let finished = kid.finish();
        let line = finished
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("COUNTS "));
        let line = line.unwrap_or_else(|| panic!("{who}: no counts: {finished:?}"));
        let n: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        (n[0], n[1], n[2], finished.stdout)
    };
    let (root_turns, _, root_errors, root_out) = counts(root, "root");
    let (user_turns, user_met_root, user_errors, user_out) = counts(user, "lockattr-t1");
    common::loud(&format!(
        "users.rs: first mode: root {root_turns} turns, lockattr-t1 {user_turns} turns \
         ({user_met_root} on root's file or busy), errors {root_errors} / {user_errors}"
    ));
    assert_eq!(
        user_errors, 0,
        "the user failed to open a new file:\n{user_out}"
    );
    assert_eq!(root_errors, 0, "root failed:\n{root_out}");
    assert!(
        user_met_root > 100,
        "the user met root's new files only {user_met_root} times in {user_turns} turns: \
         the race was not run"
    );
}

// ------------------------------------------------------- the flock(1) recipe

/// The README's recipe for scripts, `( flock -n 9 || exit 75; [ /dev/fd/9
/// -ef FILE ] || exit 75; ... ) 9<FILE`
/// with FILE from `lockattr::lock_path`, as root and as a user, either one
/// having made the file under umask 077, with `fs.protected_regular` 1 and
/// 2: it excludes and is excluded by lockattr, and exits 75 when busy. The
/// naive `flock -n FILE cmd` (an `O_CREAT` open) fails for root on a user's
/// file: the trap the recipe avoids.
#[test]
fn the_flock_recipe_works_for_root_and_users_under_protected_regular() {
    let test = "the_flock_recipe_works_for_root_and_users_under_protected_regular";
    if !common::require_root(test) || !common::require_command(test, "flock") {
        return;
    }
    for level in [1, 2] {
        let sysctl = ProtectedRegular::take();
        sysctl.set(level);
        let [t1, t2, t3] = users();
        for maker in [Some(t1), None] {
            let scratch = Scratch::new("recipe");
            // Owned by a third user, so the sysctl covers root and users.
            let dir = scratch.subdir("t3", 0o1777, t3.uid, t3.gid);
            let umask = [("LOCKATTR_TEST_UMASK", "077")];
            let made = common::output(command(&scratch, &dir, maker, "lock-path", &umask));
            let path = made.stdout.lines().find_map(|l| l.strip_prefix("PATH "));
            let path = path.unwrap_or_else(|| panic!("no path from lock-path: {made:?}"));
            let file = Path::new(path);
            assert_file(
                file,
                maker.map_or(0, |user| user.uid),
                0o644,
                "made by lock_path",
            );
            let other = match maker {
                Some(_) => None,
                None => Some(t1),
            };
            let case = format!("protected_regular={level}, file of {}", who(maker));

            let ran = recipe(&scratch, other, path);
            assert_eq!(
                ran.status.code(),
                Some(0),
                "{case}: {} free: {ran:?}",
                who(other)
            );
            assert!(ran.stdout.contains("RAN"), "{case}");
            if other.is_none() {
                let naive = naive_flock(path);
                assert_ne!(
                    naive.status.code(),
                    Some(0),
                    "{case}: root's O_CREAT flock: {naive:?}"
                );
            }

            let holder = hold(&scratch, &dir, Some(t2), &[]);
            let busy = recipe(&scratch, other, path);
            assert_eq!(
                busy.status.code(),
                Some(75),
                "{case}: {} busy: {busy:?}",
                who(other)
            );
            assert!(!busy.stdout.contains("RAN"), "{case}");
            holder.release();
        }
    }
}

/// The recipe, as `user` (root when `None`).
fn recipe(scratch: &Scratch, user: Option<&User>, path: &str) -> common::Finished {
    let script = r#"( flock -n 9 || exit 75; [ /dev/fd/9 -ef "$1" ] || exit 75; echo RAN ) 9<"$1""#;
    let mut cmd = match user {
        Some(user) => {
            let mut cmd = Command::new(sbin("runuser"));
            cmd.args(["-u", user.name, "--", "sh", "-c", script, "sh", path]);
            cmd
        }
        None => {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script, "sh", path]);
            cmd
        }
    };
    cmd.current_dir(&scratch.dir);
    common::output(cmd)
}

fn naive_flock(path: &str) -> common::Finished {
    let mut cmd = Command::new("flock");
    cmd.args(["-n", path, "true"]);
    common::output(cmd)
}

// ----------------------------------------------------------------- helpers

fn assert_file(file: &Path, uid: u32, mode: u32, when: &str) {
    let meta = std::fs::symlink_metadata(file)
        .unwrap_or_else(|err| panic!("stat {}: {err}", file.display()));
    assert!(
        meta.file_type().is_file(),
        "{} is not a regular file ({when})",
        file.display()
    );
    assert_eq!(
        (meta.uid(), format!("{:04o}", meta.mode() & 0o7777)),
        (uid, format!("{mode:04o}")),
        "owner and mode of {} ({when})",
        file.display()
    );
}

const PROTECTED_REGULAR: &str = "/proc/sys/fs/protected_regular";

/// The host-wide lock around a change of the sysctl: an flock on its own
/// file, which always exists and is opened read-only, so nothing is created
/// or left behind. It excludes this file's other tests (threads of one
/// process exclude each other) and every other run on the host. The bound
/// only turns a hang into a failure that names the holder.
const SYSCTL_LOCK: Lock = Lock::at_path(PROTECTED_REGULAR).wait_for(Duration::from_secs(600));

/// A change of `fs.protected_regular` under [`SYSCTL_LOCK`]; dropped, it
/// puts the old value back, also when the test panics, then lets go.
struct ProtectedRegular {
    old: String,
    // Dropped after `drop` has restored the value.
    _host_wide: lockattr::Guard,
}

impl ProtectedRegular {
    fn take() -> ProtectedRegular {
        let host_wide = SYSCTL_LOCK
            .acquire()
            .unwrap_or_else(|err| panic!("no turn at fs.protected_regular within 600 s: {err}"));
        let old = std::fs::read_to_string(PROTECTED_REGULAR)
            .unwrap_or_else(|err| panic!("read {PROTECTED_REGULAR}: {err}"));
        ProtectedRegular {
            old: old.trim().to_owned(),
            _host_wide: host_wide,
        }
    }

    fn set(&self, level: u8) {
        std::fs::write(PROTECTED_REGULAR, format!("{level}\n"))
            .unwrap_or_else(|err| panic!("set fs.protected_regular={level}: {err}"));
        let now = std::fs::read_to_string(PROTECTED_REGULAR).expect("read it back");
        assert_eq!(
            now.trim(),
            level.to_string(),
            "fs.protected_regular did not change"
        );
    }
}

impl Drop for ProtectedRegular {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(PROTECTED_REGULAR, format!("{}\n", self.old)) {
            eprintln!(
                "*** could not restore fs.protected_regular={}: {err} ***",
                self.old
            );
        }
    }
}

/// The sysctl's lock is a real flock on its file: while a test holds it,
/// `flock(1)` on the same file, another process, is refused, and lockattr
/// names this process as the holder.
#[test]
fn the_sysctl_lock_is_a_host_wide_flock() {
    if !common::require_command("the_sysctl_lock_is_a_host_wide_flock", "flock") {
        return;
    }
    let sysctl = ProtectedRegular::take();
    let mut cmd = Command::new("flock");
    cmd.args(["-n", PROTECTED_REGULAR, "true"]);
    let out = common::output(cmd);
    assert_eq!(out.status.code(), Some(1), "flock -n got it: {out:?}");
    let busy = std::thread::spawn(|| {
        SYSCTL_LOCK
            .wait_for(Duration::from_millis(1))
            .acquire()
            .map(drop)
    })
    .join()
    .expect("a thread")
    .expect_err("another thread of this process is another holder");
    assert!(busy.is_busy(), "{busy}");
    assert_eq!(
        busy.holder(),
        Some(&lockattr::Holder::ThisProcess {
            pid: std::process::id()
        }),
        "{busy}"
    );
    drop(sysctl);
}

struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// `lockattr-t1` to `lockattr-t3`, created when missing.
fn users() -> &'static [User; 3] {
    static USERS: OnceLock<[User; 3]> = OnceLock::new();
    USERS.get_or_init(|| ["lockattr-t1", "lockattr-t2", "lockattr-t3"].map(ensure_user))
}

fn ensure_user(name: &'static str) -> User {
    if let Some(user) = lookup(name) {
        return user;
    }
    // Another run on the host may be adding the same users: take turns,
    // under an flock on /etc/passwd itself (useradd's own locks are other
    // files), and look again once it is ours.
    const PASSWD: Lock = Lock::at_path("/etc/passwd").wait_for(Duration::from_secs(600));
    let _turn = PASSWD
        .acquire()
        .unwrap_or_else(|err| panic!("no turn at adding users: {err}"));
    if let Some(user) = lookup(name) {
        return user;
    }
    // No home; runuser runs the binary itself, so no login shell either.
    let mut cmd = Command::new(sbin("useradd"));
    cmd.args([
        "-M",
        "-s",
        "/usr/sbin/nologin",
        "-c",
        "lockattr tests",
        name,
    ]);
    let out = common::output(cmd);
    // Exit status 9: the name exists, made meanwhile by someone not taking turns.
    assert!(
        out.status.success() || out.status.code() == Some(9),
        "useradd {name}: {out:?}"
    );
    lookup(name).unwrap_or_else(|| panic!("no user {name} after useradd"))
}

fn lookup(name: &'static str) -> Option<User> {
    let id = |flag: &str| {
        let mut cmd = Command::new("id");
        cmd.args([flag, name]);
        let out = common::output(cmd);
        out.status
            .success()
            .then(|| out.stdout.trim().parse().expect("a number from id"))
    };
    Some(User {
        name,
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// `useradd` and `runuser` live in sbin, which a non-login PATH may lack.
fn sbin(command: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(command))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(command))
}

/// A 1777 directory for one test (like /tmp itself, owned by root), in the
/// run's directory, removed when the test ends.
struct Scratch {
    dir: PathBuf,
    exe: OnceLock<PathBuf>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch {
            dir: common::shared_dir(tag),
            exe: OnceLock::new(),
        }
    }

    fn subdir(&self, name: &str, mode: u32, uid: u32, gid: u32) -> PathBuf {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).expect("create a subdirectory");
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the subdirectory");
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(mode))
            .expect("chmod the subdirectory");
        dir
    }

    /// This test binary, where every user may run it: in place if every
    /// directory above it lets others through, else a 0755 copy in here
    /// (a checkout under /root is 0700).
    fn exe(&self) -> &Path {
        self.exe.get_or_init(|| {
            let exe = std::env::current_exe().expect("the test binary's path");
            let others_x =
                |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o001 != 0);
            if exe.ancestors().all(others_x) {
                return exe;
            }
            let bin = self.dir.join("bin");
            std::fs::create_dir(&bin).expect("create the bin directory");
            std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o755)).expect("chmod 0755");
            let copy = bin.join(exe.file_name().expect("a file name"));
            std::fs::copy(&exe, &copy).expect("copy the test binary");
            std::fs::set_permissions(&copy, PermissionsExt::from_mode(0o755)).expect("chmod 0755");
            copy
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn who(user: Option<&User>) -> &'static str {
    user.map_or("root", |user| user.name)
}

/// This binary as a child in `role`, run as `user` (root when `None`), with
/// `LOCKATTR_DIR=dir` (not the run's pinned directory). The role's
/// environment and arguments are those of [`common::spawn_role`]; `env`
/// sets them whatever runuser does to the caller's environment.
fn command(
    scratch: &Scratch,
    dir: &Path,
    user: Option<&User>,
    role: &str,
    vars: &[(&str, &str)],
) -> Command {
    let model = common::spawn_role(role);
    let mut cmd = match user {
        Some(user) => {
            let mut cmd = Command::new(sbin("runuser"));
            cmd.args(["-u", user.name, "--", "env"]);
            cmd
        }
        None => Command::new("env"),
    };
    let pair = |key: &OsStr, value: &OsStr| {
        let mut pair = OsString::from(key);
        pair.push("=");
        pair.push(value);
        pair
    };
    for (key, value) in model.get_envs() {
        if let Some(value) = value {
            cmd.arg(pair(key, value));
        }
    }
    cmd.arg(pair("LOCKATTR_DIR".as_ref(), dir.as_os_str()));
    for (key, value) in vars {
        cmd.arg(pair(key.as_ref(), value.as_ref()));
    }
    cmd.arg(scratch.exe())
        .args(model.get_args())
        .env_remove(common::RUN_DIR_VAR)
        .env_remove("LOCKATTR_DIR")
        .env_remove("LOCKATTR_URL")
        .current_dir("/");
    cmd
}

/// A child holding the lock until released (or dropped).
struct Holding {
    who: &'static str,
    pid: u32,
    before_ready: Vec<String>,
    kid: Kid,
}

fn hold(scratch: &Scratch, dir: &Path, user: Option<&User>, vars: &[(&str, &str)]) -> Holding {
    let mut kid = Kid::start(command(scratch, dir, user, "hold", vars));
    kid.expect("READY");
    let before_ready = kid.seen().to_vec();
    let pid = kid.expect("PID").0;
    let who = who(user);
    let pid = pid
        .parse()
        .unwrap_or_else(|_| panic!("{who}: expected `PID n`, got {pid:?}"));
    Holding {
        who,
        pid,
        before_ready,
        kid,
    }
}

impl Holding {
    /// End of input ends the hold.
    fn release(self) {
        let finished = self.kid.finish();
        assert!(
            finished.status.success() && finished.stdout.lines().any(|line| line == "RELEASED"),
            "{} did not release cleanly: {finished:?}",
            self.who
        );
    }
}

/// One non-waiting try at the lock by a child.
struct Attempt {
    who: &'static str,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn attempt(scratch: &Scratch, dir: &Path, user: Option<&User>) -> Attempt {
    let out = common::output(command(scratch, dir, user, "try", &[]));
    Attempt {
        who: who(user),
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

impl Attempt {
    fn line(&self, prefix: &str) -> Option<&str> {
        self.stdout.lines().find(|line| line.starts_with(prefix))
    }

    fn explain(&self, expected: &str, case: &str) -> String {
        let Attempt {
            who,
            code,
            stdout,
            stderr,
        } = self;
        format!(
            "{case}: expected {expected} from {who}, got exit {code:?}\n--- stdout\n{stdout}--- stderr\n{stderr}"
        )
    }

    fn locked(&self, case: &str) {
        let ok = self.code == Some(0) && self.line("LOCKED").is_some();
        assert!(ok, "{}", self.explain("LOCKED", case));
    }

    /// Busy, naming the holder's pid; returns the message.
    fn busy(&self, holder: u32, case: &str) -> String {
        let line = self.line("BUSY ").filter(|_| self.code == Some(BUSY));
        let line = line.unwrap_or_else(|| panic!("{}", self.explain("BUSY", case)));
        let unknown = !common::NAMES_OTHER_PROCESSES && line.contains(common::UNKNOWN_HOLDER);
        assert!(
            line.contains(&format!("pid {holder}")) || unknown,
            "{case}: the busy message does not name pid {holder}: {line}"
        );
        line.to_owned()
    }

    /// A setup error (never busy); returns the message.
    fn failed(&self, case: &str) -> String {
        let line = self.line("FAILED ").filter(|_| self.code == Some(FAILED));
        line.unwrap_or_else(|| panic!("{}", self.explain("FAILED", case)))
            .to_owned()
    }
}

fn plant(scratch: &Scratch, user: &User, path: &Path, mode: u32) {
    let dir = path.parent().expect("a directory");
    let path = path.to_str().expect("a UTF-8 path");
    let mode = format!("{mode:o}");
    let vars = [
        ("LOCKATTR_TEST_PATH", path),
        ("LOCKATTR_TEST_MODE", mode.as_str()),
    ];
    let out = common::output(command(scratch, dir, Some(user), "plant", &vars));
    let planted = out.status.success() && out.stdout.lines().any(|l| l == "PLANTED");
    assert!(planted, "{} could not plant {path}: {out:?}", user.name);
}

/// A raw open(2) of `path` by `user`, in a child.
fn probe_open(scratch: &Scratch, user: &User, path: &Path, flags: &str) -> Result<(), Errno> {
    let dir = path.parent().expect("a directory");
    let path_str = path.to_str().expect("a UTF-8 path");
    let vars = [
        ("LOCKATTR_TEST_PATH", path_str),
        ("LOCKATTR_TEST_FLAGS", flags),
    ];
    let out = common::output(command(scratch, dir, Some(user), "open", &vars));
    let result = out.stdout.lines().find_map(|line| match line {
        "OPENED" => Some(Ok(())),
        _ => line
            .strip_prefix("ERRNO ")?
            .parse()
            .ok()
            .map(|raw| Err(Errno::from_raw_os_error(raw))),
    });
    result.unwrap_or_else(|| panic!("{} could not probe {path_str}: {out:?}", user.name))
}
