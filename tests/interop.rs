//! Other flock(2) users of the same file exclude `#[exclusive]` and are
//! excluded by it, both ways: the `flock(1)` command and Python's
//! `fcntl.flock`, on the file `lockattr::lock_path` names.
//!
//! Without `flock` or `python3` the tests say so loudly and skip.

mod agent;
mod common;

use common::Kid;
use lockattr::exclusive;
use std::path::Path;
use std::process::Command;

/// Another program holding the lock file until its stdin closes; it prints
/// `READY` once it holds.
struct Foreign {
    kid: Kid,
}

impl Foreign {
    fn start(cmd: Command) -> Foreign {
        let mut kid = Kid::start(cmd);
        kid.expect("READY");
        Foreign { kid }
    }

    fn pid(&self) -> u32 {
        self.kid.pid()
    }

    fn release(self) {
        let finished = self.kid.finish();
        assert!(
            finished.status.success(),
            "the foreign holder failed: {finished:?}"
        );
    }
}

/// Exit status of a command run to its end.
fn status(cmd: Command) -> Option<i32> {
    common::output(cmd).status.code()
}

/// `flock -n [-s] FILE true`: 0 if it got the lock, 1 if it was busy.
fn flock_n(path: &Path, shared: bool) -> Option<i32> {
    let mut cmd = Command::new("flock");
    cmd.arg("-n");
    if shared {
        cmd.arg("-s");
    }
    cmd.arg(path).arg("true");
    status(cmd)
}

/// `flock -o [-s] FILE sh -c 'echo READY; read line || true'`: holds the lock while
/// `sh` waits on stdin (`-o`: `sh` does not inherit the descriptor, so the
/// lock belongs to `flock` alone).
fn flock_hold(path: &Path, shared: bool) -> Foreign {
    let mut cmd = Command::new("flock");
    cmd.arg("-o");
    if shared {
        cmd.arg("-s");
    }
    cmd.arg(path)
        .args(["sh", "-c", "echo READY; read line || true"]);
    Foreign::start(cmd)
}

const PY_TRY: &str = "\
import fcntl, sys
f = open(sys.argv[1])
try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
";

const PY_HOLD: &str = "\
import fcntl, sys
f = open(sys.argv[1])
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print('READY', flush=True)
sys.stdin.readline()
";

fn python(script: &str, path: &Path) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).arg(path);
    cmd
}

// ----------------------------------------------------------------- flock(1)

#[exclusive("interop-flock-refused")]
fn run_flock_inside(path: &Path) -> Result<(Option<i32>, Option<i32>), lockattr::Error> {
    Ok((flock_n(path, false), flock_n(path, true)))
}

/// While an `#[exclusive]` body runs, `flock -n FILE` (and `flock -n -s`)
/// on the file `lock_path` names fail with status 1; afterwards they work.
#[test]
fn flock_command_is_refused_while_we_hold() {
    if !common::require_command("flock_command_is_refused_while_we_hold", "flock") {
        return;
    }
    let path = lockattr::lock_path("interop-flock-refused").unwrap();
    let (exclusive, shared) = run_flock_inside(&path).expect("free");
    assert_eq!(exclusive, Some(1), "flock -n must fail while we hold");
    assert_eq!(shared, Some(1), "flock -n -s must fail while we hold");
    assert_eq!(flock_n(&path, false), Some(0), "free once we returned");
}

#[exclusive("interop-flock-holds")]
fn while_flock_holds() -> Result<(), lockattr::Error> {
    Ok(())
}

#[exclusive("interop-flock-holds", shared)]
fn shared_while_flock_holds() -> Result<(), lockattr::Error> {
    Ok(())
}

/// While `flock FILE command` runs, an `#[exclusive]` call is busy and names
/// flock's pid; a shared `flock -s` admits our shared holders only.
#[test]
fn we_are_busy_while_the_flock_command_holds() {
    if !common::require_command("we_are_busy_while_the_flock_command_holds", "flock") {
        return;
    }
    let path = lockattr::lock_path("interop-flock-holds").unwrap();
    while_flock_holds().expect("free at first; the file now exists");

    let holder = flock_hold(&path, false);
    let err = while_flock_holds().unwrap_err();
    agent::assert_err_busy_by(&err, holder.pid());
    agent::assert_err_busy_by(&shared_while_flock_holds().unwrap_err(), holder.pid());
    holder.release();
    while_flock_holds().expect("free once flock let go");

    let holder = flock_hold(&path, true);
    shared_while_flock_holds().expect("shared beside flock -s");
    let err = while_flock_holds().unwrap_err();
    agent::assert_err_busy_by(&err, holder.pid());
    holder.release();
}

// ------------------------------------------------------------------ Python

#[exclusive("interop-python-refused")]
fn run_python_inside(path: &Path) -> Result<Option<i32>, lockattr::Error> {
    Ok(status(python(PY_TRY, path)))
}

/// Python's `fcntl.flock(LOCK_EX | LOCK_NB)` fails while we hold, and
/// succeeds after.
#[test]
fn python_flock_is_refused_while_we_hold() {
    if !common::require_command("python_flock_is_refused_while_we_hold", "python3") {
        return;
    }
    let path = lockattr::lock_path("interop-python-refused").unwrap();
    assert_eq!(
        run_python_inside(&path).expect("free"),
        Some(3),
        "python must be refused"
    );
    assert_eq!(
        status(python(PY_TRY, &path)),
        Some(0),
        "free once we returned"
    );
}

#[exclusive("interop-python-holds")]
fn while_python_holds() -> Result<(), lockattr::Error> {
    Ok(())
}

/// While Python holds the file with `fcntl.flock`, we are busy and name
/// Python's pid; free once it lets go.
#[test]
fn we_are_busy_while_python_holds() {
    if !common::require_command("we_are_busy_while_python_holds", "python3") {
        return;
    }
    let path = lockattr::lock_path("interop-python-holds").unwrap();
    while_python_holds().expect("free at first; the file now exists");
    let holder = Foreign::start(python(PY_HOLD, &path));
    let err = while_python_holds().unwrap_err();
    agent::assert_err_busy_by(&err, holder.pid());
    holder.release();
    while_python_holds().expect("free once python let go");
}
