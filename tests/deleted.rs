//! A lock file deleted or replaced while it is held. flock(2) locks the
//! inode, not the name: once the name points elsewhere, the next caller
//! locks a new file and runs beside the holder. No lock library can stop
//! that; the holder notices when it lets go and says so loudly.

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use common::Kid;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const WARNING: &str = "WARNING: exclusion may have been broken";

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        agent::ROLE => agent::serve(),
        // Holds until a line comes on stdin, then lets go and exits.
        "hold" => {
            let dir = std::env::var("LOCKATTR_TEST_DIR").expect("LOCKATTR_TEST_DIR");
            let name = std::env::var("LOCKATTR_TEST_NAME").expect("LOCKATTR_TEST_NAME");
            let lock =
                lockattr::Lock::new(lockattr::LockName::try_new(common::leak(name)).unwrap())
                    .dir(common::leak(dir));
            let guard = lock.acquire().expect("the holder takes the free lock");
            println!("HELD");
            let _ = std::io::stdin().read_line(&mut String::new());
            drop(guard);
            println!("RELEASED");
        }
        // As "hold", with lockattr's lines going to a function of ours that
        // asks about the same lock when it is told it was lost.
        "hold-told" => {
            fn told(message: &lockattr::Message<'_>) {
                if let lockattr::Message::Lost { .. } = message {
                    let held = lock_from_env().still_held();
                    println!("TOLD {message} / still held: {held:?}");
                }
            }
            lockattr::set_messages(lockattr::Messages::To(told));
            let guard = lock_from_env()
                .acquire()
                .expect("the holder takes the free lock");
            println!("HELD");
            let _ = std::io::stdin().read_line(&mut String::new());
            drop(guard);
            println!("RELEASED");
        }
        // Waits for the lock without limit, holds it until a line comes.
        "wait" => {
            let dir = std::env::var("LOCKATTR_TEST_DIR").expect("LOCKATTR_TEST_DIR");
            let name = std::env::var("LOCKATTR_TEST_NAME").expect("LOCKATTR_TEST_NAME");
            let lock =
                lockattr::Lock::new(lockattr::LockName::try_new(common::leak(name)).unwrap())
                    .dir(common::leak(dir))
                    .wait();
            println!("WAITING");
            let guard = lock.acquire().expect("the waiter gets the lock");
            println!("GOT");
            let _ = std::io::stdin().read_line(&mut String::new());
            drop(guard);
        }
        other => panic!("unknown role {other:?}"),
    }
}

fn lock_from_env() -> lockattr::Lock {
    let dir = std::env::var("LOCKATTR_TEST_DIR").expect("LOCKATTR_TEST_DIR");
    let name = std::env::var("LOCKATTR_TEST_NAME").expect("LOCKATTR_TEST_NAME");
    lockattr::Lock::new(lockattr::LockName::try_new(common::leak(name)).unwrap())
        .dir(common::leak(dir))
}

/// Starts a holder of `name` in `dir`; returns once it holds.
fn start_holder(dir: &TempDir, name: &str) -> Holder {
    let dir = dir.path().to_str().expect("a UTF-8 path");
    let mut kid = Kid::role(
        "hold",
        &[("LOCKATTR_TEST_DIR", dir), ("LOCKATTR_TEST_NAME", name)],
    );
    kid.expect("HELD");
    Holder(kid)
}

struct Holder(Kid);

impl Holder {
    /// Tells the holder to let go; returns what it wrote on stderr.
    fn release(mut self) -> String {
        self.0.send("");
        self.0.expect("RELEASED");
        let finished = self.0.finish();
        assert!(finished.status.success(), "the holder failed: {finished:?}");
        finished.stderr
    }
}

fn replace(path: &Path) {
    let other = path.with_extension("new");
    std::fs::write(&other, "").expect("write the replacement");
    std::fs::rename(&other, path).expect("rename it over the lock file");
}

/// What lockattr documents it cannot prevent: after `rm` (or `mv` over the
/// file), a second process locks a new file and both hold "the" lock. The
/// first one then warns, naming the lock, the file and what happened, in a
/// line that starts with the program's name.
#[test]
fn deleting_a_held_file_lets_a_second_holder_in_and_the_first_warns() {
    for how in ["deleted", "replaced"] {
        let dir = TempDir::new(how);
        let name = format!("lost-{how}");
        let a = start_holder(&dir, &name);
        let path = dir.path().join(format!("{name}.lock"));
        let before = std::fs::metadata(&path).unwrap().ino();
        if how == "deleted" {
            std::fs::remove_file(&path).unwrap();
        } else {
            replace(&path);
        }

        // The overlap itself: B runs while A still holds its orphaned file.
        let mut b = Agent::start(&name, Some(dir.path()));
        assert_eq!(b.lock(), Reply::Held, "B locks the new file at the path");
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), before);

        // By now the path names B's file: replaced, or deleted and made again.
        let line = warning(&a.release(), how);
        assert!(line.contains("was replaced"), "says what happened: {line}");
        assert!(
            line.contains(&path.display().to_string()),
            "names the file: {line}"
        );
        assert!(line.contains(&name), "names the lock: {line}");
        let program = std::env::current_exe().unwrap();
        let program = program.file_name().unwrap().to_string_lossy();
        assert!(
            line.starts_with(&format!("{program}: ")),
            "starts with the program: {line}"
        );
        b.unlock();
    }
}

/// Deleted and not made again: the warning says deleted.
#[test]
fn a_held_file_deleted_for_good_is_reported_deleted() {
    let dir = TempDir::new("gone");
    let a = start_holder(&dir, "gone");
    std::fs::remove_file(dir.path().join("gone.lock")).unwrap();
    let line = warning(&a.release(), "deleted for good");
    assert!(line.contains("was deleted"), "says what happened: {line}");
}

/// Moved to another name while held: the path names nothing, so the next
/// caller would make a new file there. The holder says so when it lets go.
#[test]
fn a_held_file_moved_away_is_reported_at_release() {
    let dir = TempDir::new("moved");
    let a = start_holder(&dir, "moved");
    let path = dir.path().join("moved.lock");
    std::fs::rename(&path, dir.path().join("moved-elsewhere")).unwrap();
    let line = warning(&a.release(), "moved away");
    assert!(line.contains("moved away"), "says what happened: {line}");
    assert!(
        line.contains(&path.display().to_string()),
        "names it: {line}"
    );
}

/// The same for a file made long before the hold: the release then asks
/// the descriptor (`fstat`), and the rename shows in the file's change
/// time. The wait ages the file past the two seconds under which a change
/// time is not trusted (the kernel's coarse clock); it is no
/// synchronisation.
#[test]
fn an_old_held_file_moved_away_is_reported_at_release() {
    let dir = TempDir::new("moved-old");
    let path = dir.path().join("moved-old.lock");
    std::fs::File::create(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let a = start_holder(&dir, "moved-old");
    std::fs::rename(&path, dir.path().join("moved-old-elsewhere")).unwrap();
    let line = warning(&a.release(), "moved away");
    assert!(line.contains("moved away"), "says what happened: {line}");
}

/// The warning is said out of the lock's own mutex: a message function of
/// the program's that asks about the same lock gets its answer (false)
/// instead of hanging the release.
#[test]
fn the_warning_may_go_to_a_function_that_uses_the_same_lock() {
    let dir = TempDir::new("told");
    let path = dir.path().to_str().expect("a UTF-8 path");
    let env = [("LOCKATTR_TEST_DIR", path), ("LOCKATTR_TEST_NAME", "told")];
    let mut holder = Kid::role("hold-told", &env);
    holder.expect("HELD");
    std::fs::remove_file(dir.path().join("told.lock")).unwrap();
    holder.send("");
    let (told, _) = holder.expect("TOLD");
    assert!(told.contains(WARNING), "{told}");
    assert!(told.ends_with("still held: Ok(false)"), "{told}");
    holder.expect("RELEASED");
}

fn warning(stderr: &str, how: &str) -> String {
    let line = stderr.lines().find(|line| line.contains(WARNING));
    let line = line.unwrap_or_else(|| panic!("no warning from the holder ({how}): {stderr:?}"));
    line.to_owned()
}

/// A holder whose file stays in place says nothing when it lets go.
#[test]
fn an_undisturbed_holder_lets_go_quietly() {
    let dir = TempDir::new("quiet");
    let a = start_holder(&dir, "quiet");
    let stderr = a.release();
    assert!(!stderr.contains(WARNING), "a false alarm: {stderr:?}");
}

/// A waiter blocked on the old file when it is replaced still names the
/// holder of the file it waits on (which the path no longer leads to), and
/// once that holder lets go it moves to the new file.
#[test]
fn a_waiter_on_a_replaced_file_names_its_holder() {
    let dir = TempDir::new("replaced-waiter");
    let name = "replaced-waiter";
    let holder = start_holder(&dir, name);
    let path = dir.path().join(format!("{name}.lock"));
    let path_str = dir.path().to_str().unwrap();
    let mut waiter = Kid::role(
        "wait",
        &[
            ("LOCKATTR_TEST_DIR", path_str),
            ("LOCKATTR_TEST_NAME", name),
        ],
    );
    waiter.expect("WAITING");
    common::until_blocked_in_kernel(&path, waiter.pid());
    replace(&path);
    // About a second into its wait, the notice; its holder is the process
    // holding the old file, found by that file's identity.
    let (notice, _) = waiter.expect_stderr("waiting for lock");
    common::assert_names_pid(&notice, holder.0.pid());
    let _ = holder.release();
    waiter.expect("GOT");
    let held_file = std::fs::metadata(&path).unwrap().ino();
    let mut other = Agent::start(name, Some(dir.path()));
    agent::assert_busy_by(
        &other.lock(),
        waiter.pid(),
        &format!("the waiter holds the file the path names now (inode {held_file})"),
    );
    waiter.send("");
}
