//! Behaviour across real processes: the busy outcome of each return type as
//! another process sees it, errors and panics of the body, a SIGKILLed
//! holder, processes started by the body, nested re-entry, threads, shared
//! holders, async tasks, and a child made by fork(2) without exec.
//!
//! Other processes are this test binary re-run in a role (see
//! `tests/common`), most often a lock agent (`tests/agent`) that takes and
//! lets go of a lock when told. Each test uses its own lock name: the tests
//! of this file run in parallel threads of one process.

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use common::Kid;
use lockattr::{ErrorKind, exclusive};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A file the body of a child's `#[exclusive]` function creates, so the
/// parent can tell whether the body ran.
const MARKER: &str = "LOCKATTR_TEST_MARKER";

fn touch_marker() {
    if let Ok(path) = std::env::var(MARKER) {
        std::fs::write(path, "ran").expect("create the marker");
    }
}

fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").expect("write stdout");
    out.flush().expect("flush stdout");
}

/// Blocks until the parent writes a line (or closes the pipe).
fn wait_for_parent() {
    let _ = std::io::stdin().read_line(&mut String::new());
}

fn our_pid() -> u32 {
    std::process::id()
}

/// Non-empty lines of a child's output.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The line of `out` that starts with `prefix`, without it.
fn field(out: &str, prefix: &str) -> Option<String> {
    lines(out)
        .into_iter()
        .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
}

/// Runs `f` on another thread and fails the test if it does not answer
/// within 10 s: a request that must be refused must never hang.
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
}

fn is_running(pid: u32) -> bool {
    // A zombie still has /proc/PID; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// The files a process has open, by path.
fn open_files(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the process's fd directory")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .collect()
}

// --------------------------------------------------------------- children

/// Runs in a child process started by a test below.
#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return; // run by hand with --ignored: nothing to do
    };
    match role.as_str() {
        agent::ROLE => agent::serve(),
        "unit" => {
            unit_body();
            say("RETURNED");
        }
        "result" => match result_body() {
            Ok(n) => say(format!("OUTCOME OK {n}")),
            Err(err) => {
                say(format!("OUTCOME {}", agent::describe(&err)));
                say(format!("DISPLAY {err}"));
            }
        },
        "on-busy" => say(format!("VALUE {}", answer(-21))),
        "catch-panic" => {
            let caught = std::panic::catch_unwind(explode_in_child);
            assert!(caught.is_err(), "the body panics");
            say("READY");
            wait_for_parent();
        }
        "panic" => explode_in_child(),
        "sleeper-return" => {
            let pid = sleeper_then_return().expect("the lock is free");
            say(format!("RETURNED {pid}"));
        }
        "sleeper-stay" => {
            sleeper_then_stay().expect("the lock is free");
        }
        "nested" => {
            let outcome = deploy();
            say(format!(
                "OUTER {}",
                outcome.map_or_else(|e| e.to_string(), |()| "OK".into())
            ));
            wait_for_parent();
        }
        "fork" => fork_role(),
        "churn" => churn_role(),
        other => panic!("unknown role {other:?}"),
    }
}

// ------------------------------------------------- busy, by return type

#[exclusive("process-unit")]
fn unit_body() {
    touch_marker();
}

/// `()`: one stderr line naming the lock, its file and the holder's pid; the
/// body does not run; the process goes on and exits 0.
#[test]
fn unit_fn_busy_in_a_child_prints_one_line_and_skips_the_body() {
    let scratch = TempDir::new("unit");
    let marker = scratch.path().join("ran");
    let mut holder = Agent::start("process-unit", None);
    assert_eq!(holder.lock(), Reply::Held);
    let path = holder.path("path");

    let mut cmd = common::spawn_role("unit");
    cmd.env(MARKER, &marker);
    let out = common::output(cmd);
    let stderr = lines(&out.stderr);
    assert!(
        out.status.success(),
        "exit status {}: {stderr:?}",
        out.status
    );
    assert!(
        field(&out.stdout, "RETURNED").is_some(),
        "the caller went on"
    );
    assert!(!marker.exists(), "busy: the body must not run");
    assert_eq!(stderr.len(), 1, "exactly one line on stderr: {stderr:#?}");
    let line = &stderr[0];
    assert!(line.contains("\"process-unit\""), "names the lock: {line}");
    assert!(
        line.contains(&path.display().to_string()),
        "names the file: {line}"
    );
    assert!(line.contains("busy"), "says busy: {line}");
    common::assert_names_pid(line, holder.pid());

    holder.unlock();
    let mut cmd = common::spawn_role("unit");
    cmd.env(MARKER, &marker);
    let out = common::output(cmd);
    assert!(out.status.success());
    assert!(marker.exists(), "free: the body runs");
    assert_eq!(
        lines(&out.stderr),
        Vec::<String>::new(),
        "free: nothing on stderr"
    );
}

#[exclusive("process-result")]
fn result_body() -> Result<u32, lockattr::Error> {
    touch_marker();
    Ok(7)
}

/// `Result<_, lockattr::Error>`: `Err` that is busy and names the holder.
#[test]
fn result_fn_busy_in_a_child_is_err_naming_the_holder() {
    let scratch = TempDir::new("result");
    let marker = scratch.path().join("ran");
    let mut holder = Agent::start("process-result", None);
    assert_eq!(holder.lock(), Reply::Held);
    let path = holder.path("path");

    let mut cmd = common::spawn_role("result");
    cmd.env(MARKER, &marker);
    let out = common::output(cmd);
    assert!(out.status.success());
    let outcome = field(&out.stdout, "OUTCOME ").expect("an outcome");
    agent::assert_busy_by(&Reply::parse(&outcome), holder.pid(), "the child");
    let display = field(&out.stdout, "DISPLAY ").expect("the error's Display");
    assert!(display.contains("process-result"), "{display}");
    assert!(display.contains(&path.display().to_string()), "{display}");
    assert!(!marker.exists(), "busy: the body must not run");

    holder.unlock();
    let mut cmd = common::spawn_role("result");
    cmd.env(MARKER, &marker);
    let out = common::output(cmd);
    assert_eq!(field(&out.stdout, "OUTCOME "), Some("OK 7".to_owned()));
    assert!(marker.exists());
}

/// An entry point returning `anyhow::Result`, as `fn main` would: libtest
/// reports its value through `std::process::Termination`, the trait that
/// turns `main`'s `Err` into "Error: ..." and a failure exit status. The
/// lock is on a function the test calls: on the test itself it would wait.
#[test]
#[ignore = "only as a child process of another test"]
fn main_anyhow() -> anyhow::Result<()> {
    locked_main_anyhow()
}

#[exclusive("process-main-anyhow")]
fn locked_main_anyhow() -> anyhow::Result<()> {
    touch_marker();
    Ok(())
}

#[test]
fn anyhow_main_busy_exits_nonzero_with_the_message() {
    let scratch = TempDir::new("main-anyhow");
    let marker = scratch.path().join("ran");
    let run = || {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.args(["--exact", "main_anyhow", "--ignored", "--nocapture"])
            .args(["--test-threads=1", "-q"])
            .env(MARKER, &marker);
        common::output(cmd)
    };
    let mut holder = Agent::start("process-main-anyhow", None);
    assert_eq!(holder.lock(), Reply::Held);

    let out = run();
    assert!(!out.status.success(), "busy main must fail");
    assert!(!marker.exists(), "busy: the body must not run");
    let error = lines(&out.stderr)
        .into_iter()
        .find(|line| line.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no Error: line: {:?}", lines(&out.stderr)));
    assert!(error.contains("\"process-main-anyhow\""), "{error}");
    assert!(error.contains("busy"), "{error}");
    common::assert_names_pid(&error, holder.pid());

    holder.unlock();
    let out = run();
    assert!(out.status.success(), "free: {:?}", lines(&out.stderr));
    assert!(marker.exists(), "free: the body runs");
}

#[exclusive("process-on-busy", on_busy = fallback * 2)]
fn answer(fallback: i32) -> i32 {
    touch_marker();
    42
}

/// `on_busy = EXPR`: the expression's value (computed from a parameter).
#[test]
fn on_busy_value_is_returned_in_a_child() {
    let scratch = TempDir::new("on-busy");
    let marker = scratch.path().join("ran");
    let mut holder = Agent::start("process-on-busy", None);
    assert_eq!(holder.lock(), Reply::Held);
    let mut cmd = common::spawn_role("on-busy");
    cmd.env(MARKER, &marker);
    let out = common::output(cmd);
    assert!(out.status.success());
    assert_eq!(field(&out.stdout, "VALUE "), Some("-42".to_owned()));
    assert!(!marker.exists());
    assert_eq!(
        lines(&out.stderr),
        Vec::<String>::new(),
        "on_busy prints nothing"
    );

    holder.unlock();
    let mut cmd = common::spawn_role("on-busy");
    cmd.env(MARKER, &marker);
    let out = common::output(cmd);
    assert_eq!(field(&out.stdout, "VALUE "), Some("42".to_owned()));
    assert!(marker.exists());
}

// ------------------------------------------------ errors and panics

#[exclusive("process-body-io-error")]
fn read_config(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[exclusive("process-body-anyhow-error")]
fn ship() -> anyhow::Result<()> {
    anyhow::bail!("artifact missing")
}

/// A body that fails with a `lockattr::Error` of its own (another lock's
/// setup failure): it must come out as that error, not as this lock's.
#[exclusive("process-body-lockattr-error")]
fn take_other_lock() -> Result<(), lockattr::Error> {
    let other = lockattr::Lock::new(lockattr::LockName::new("process-other"))
        .dir("/nonexistent-lockattr-process-dir");
    drop(other.acquire()?);
    Ok(())
}

/// The seed's trap: an I/O error of the body is not "busy".
#[test]
fn a_body_error_passes_through_as_itself_and_releases() {
    let err = read_config(Path::new("/nonexistent-lockattr-process/config")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(err.raw_os_error(), Some(2), "the body's own ENOENT");
    assert!(
        err.get_ref()
            .is_none_or(|inner| !inner.is::<lockattr::Error>()),
        "not a lockattr error: {err}"
    );
    let mut other = Agent::start("process-body-io-error", None);
    assert_eq!(other.lock(), Reply::Held, "released after the error");
    other.unlock();

    let err = ship().unwrap_err();
    assert_eq!(err.to_string(), "artifact missing");
    assert!(err.downcast_ref::<lockattr::Error>().is_none());
    let mut other = Agent::start("process-body-anyhow-error", None);
    assert_eq!(other.lock(), Reply::Held);
    other.unlock();

    let err = take_other_lock().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(err.lock_name(), Some("process-other"));
    assert!(
        err.path()
            .unwrap()
            .starts_with("/nonexistent-lockattr-process-dir")
    );
    let mut other = Agent::start("process-body-lockattr-error", None);
    assert_eq!(other.lock(), Reply::Held);
}

#[exclusive("process-panic")]
fn explode() {
    panic!("boom in the body");
}

/// Unwinding out of the body releases the lock; a process can take it at
/// once, while this one lives on.
#[test]
fn a_panic_caught_in_process_releases_for_another_process() {
    let mut other = Agent::start("process-panic", None);
    assert!(std::panic::catch_unwind(explode).is_err());
    assert_eq!(other.lock(), Reply::Held, "released by unwinding");
    other.unlock();
    // And taken again here after the other process let go.
    assert!(
        std::panic::catch_unwind(explode).is_err(),
        "the body ran again"
    );
}

#[exclusive("process-panic-child")]
fn explode_in_child() {
    say("IN-BODY");
    panic!("boom in the child's body");
}

/// A child panics in the body and catches it, then stays alive: the lock
/// must be free while it lives. And a child that dies of the panic leaves
/// no lock behind.
#[test]
fn a_panicking_child_releases_whether_it_lives_or_dies() {
    let mut other = Agent::start("process-panic-child", None);
    let mut peer = Kid::role("catch-panic", &[]);
    peer.expect("READY");
    assert_eq!(
        other.lock(),
        Reply::Held,
        "free while the child still lives"
    );
    assert!(is_running(peer.pid()), "the child is still alive");
    other.unlock();
    assert!(peer.finish().status.success());

    let out = common::output(common::spawn_role("panic"));
    assert!(
        field(&out.stdout, "IN-BODY").is_some(),
        "the child took the lock"
    );
    assert!(!out.status.success(), "the child died of the panic");
    assert_eq!(other.lock(), Reply::Held);
}

// --------------------------------------------------------- SIGKILL

/// The kernel drops the flock of a killed holder: no stale lock.
#[test]
fn a_sigkilled_holder_frees_the_lock_at_once() {
    let dir = TempDir::new("sigkill");
    let name = common::unique_name("sigkill");
    let mut holder = Agent::start(&name, Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    let mut next = Agent::start(&name, Some(dir.path()));
    agent::assert_busy_by(&next.lock(), holder.pid(), "before the kill");
    holder.kill();
    let start = Instant::now();
    assert_eq!(next.lock(), Reply::Held, "the next caller gets it at once");
    assert!(start.elapsed() < Duration::from_secs(2));
    next.unlock();
    assert_eq!(Reply::of(dir.lock(&name).acquire()), Reply::Held);
    assert!(
        dir.path().join(format!("{name}.lock")).exists(),
        "never deleted"
    );
}

// ------------------------------------------------------ naming the holder

/// Takes and drops flocks on a few files of `LOCKATTR_TEST_CHURN_DIR` in a
/// tight loop until killed, as the other lock users of a busy host do.
fn churn_role() {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let dir = PathBuf::from(std::env::var("LOCKATTR_TEST_CHURN_DIR").expect("the churn dir"));
    let files: Vec<_> = (0..8)
        .map(|i| {
            let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC;
            rustix::fs::open(
                dir.join(format!("churn-{i}")),
                flags,
                Mode::from_raw_mode(0o644),
            )
            .expect("open a churn file")
        })
        .collect();
    say("READY");
    loop {
        for fd in &files {
            rustix::fs::flock(fd, FlockOperation::LockExclusive).expect("flock");
        }
        for fd in &files {
            rustix::fs::flock(fd, FlockOperation::Unlock).expect("unlock");
        }
    }
}

/// The holder's pid comes from `/proc/locks`; it must be found also while
/// other processes take and drop flocks on other files. `/proc/locks` is a
/// seq_file: read in pieces (`std::fs::read_to_string` starts with a 32-byte
/// read), the kernel resumes the list by position between reads, so a lock
/// that was released meanwhile shifts the list and the holder's line can be
/// skipped. Busy must then still name the holder.
#[test]
fn the_holder_is_named_while_other_locks_change() {
    let dir = TempDir::new("churn");
    let name = common::unique_name("named");
    let mut holder = Agent::start(&name, Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    let churn_dir = dir.path().to_str().expect("a UTF-8 path");
    let churners: Vec<Kid> = (0..2)
        .map(|_| {
            let mut churner = Kid::role("churn", &[("LOCKATTR_TEST_CHURN_DIR", churn_dir)]);
            churner.expect("READY");
            churner
        })
        .collect();
    let lock = dir.lock(&name);
    let (mut named, mut unnamed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let err = lock.acquire().expect_err("held by the agent");
        match agent::holder_pid(&err) {
            Some(pid) => {
                assert_eq!(pid, holder.pid(), "{err}");
                named += 1;
            }
            None => unnamed += 1,
        }
    }
    drop(churners);
    if !common::NAMES_OTHER_PROCESSES {
        assert_eq!(named, 0, "a holder named without /proc/locks");
        return;
    }
    assert_eq!(
        unnamed,
        0,
        "{unnamed} of {} busy errors did not name the holder",
        named + unnamed
    );
}

// ----------------------------------------- processes started by the body

// Not waited for: the sleeper must outlive this process, whose init (or
// subreaper) reaps it; the test kills it by pid.
#[allow(clippy::zombie_processes)]
fn spawn_sleeper() -> u32 {
    let sleeper = Command::new("sleep")
        .arg("5")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sleep");
    sleeper.id()
}

#[exclusive("process-cloexec-return")]
fn sleeper_then_return() -> Result<u32, lockattr::Error> {
    Ok(spawn_sleeper())
}

#[exclusive("process-cloexec-stay")]
fn sleeper_then_stay() -> Result<(), lockattr::Error> {
    let pid = spawn_sleeper();
    say("READY");
    say(format!("SLEEPER {pid}"));
    wait_for_parent(); // the parent kills us here, inside the hold
    Ok(())
}

/// The body starts `sleep 5` and returns; the process exits. While the
/// sleeper still runs, another process takes the lock, and the sleeper has
/// no descriptor of the lock file (`O_CLOEXEC`).
#[test]
fn a_process_started_by_the_body_does_not_keep_the_lock() {
    let mut other = Agent::start("process-cloexec-return", None);
    let path = other.path("path");
    let out = common::output(common::spawn_role("sleeper-return"));
    let sleeper: u32 = field(&out.stdout, "RETURNED ")
        .expect("the child returned")
        .parse()
        .expect("a pid");
    assert!(is_running(sleeper), "the sleeper still runs");
    assert!(
        !open_files(sleeper).contains(&path),
        "the sleeper inherited the lock file"
    );
    assert_eq!(other.lock(), Reply::Held, "free while the sleeper runs");
    common::kill(sleeper);
}

/// The sharp version: the holder is SIGKILLed inside the body, so it never
/// unlocks. Only if the sleeper did not inherit the descriptor is the lock
/// free while the sleeper runs.
#[test]
fn a_holder_killed_while_its_grandchild_runs_leaves_no_lock() {
    let mut other = Agent::start("process-cloexec-stay", None);
    let path = other.path("path");
    let mut holder = Kid::role("sleeper-stay", &[]);
    holder.expect("READY");
    let sleeper: u32 = holder.expect("SLEEPER").0.parse().expect("a pid");
    agent::assert_busy_by(&other.lock(), holder.pid(), "while the holder lives");
    assert!(
        !open_files(sleeper).contains(&path),
        "the sleeper inherited the lock file"
    );
    holder.kill();
    assert!(!holder.finish().status.success(), "killed");
    assert!(is_running(sleeper), "the sleeper still runs");
    assert_eq!(other.lock(), Reply::Held, "free while the sleeper runs");
    common::kill(sleeper);
}

// -------------------------------------------------------- nested re-entry

#[exclusive("process-nested")]
fn deploy() -> Result<(), lockattr::Error> {
    build()?;
    say("AFTER-INNER");
    wait_for_parent();
    Ok(())
}

#[exclusive("process-nested")]
fn build() -> Result<(), lockattr::Error> {
    say("IN-INNER");
    wait_for_parent();
    Ok(())
}

/// `deploy()` calls `build()` on the same lock: the inner call runs at
/// once; another process sees the lock busy during the inner call and
/// after it returns; it is free only when the outermost call returns.
#[test]
fn nested_reentry_runs_at_once_while_others_see_busy() {
    let mut other = Agent::start("process-nested", None);
    let mut peer = Kid::role("nested", &[]);
    peer.expect("IN-INNER");
    agent::assert_busy_by(&other.lock(), peer.pid(), "during the inner call");
    peer.send("");
    peer.expect("AFTER-INNER");
    agent::assert_busy_by(&other.lock(), peer.pid(), "after the inner call returned");
    peer.send("");
    assert_eq!(peer.expect("OUTER").0, "OK", "neither call was busy");
    assert!(is_running(peer.pid()));
    assert_eq!(
        other.lock(),
        Reply::Held,
        "released by the outermost return"
    );
    other.unlock();
    peer.send("");
    assert!(peer.finish().status.success());
}

#[exclusive("process-nested-panic")]
fn outer_catching(other: &mut Agent) -> Result<Reply, lockattr::Error> {
    let caught = std::panic::catch_unwind(inner_panicking);
    assert!(caught.is_err(), "the inner body panics");
    Ok(other.lock())
}

#[exclusive("process-nested-panic")]
fn inner_panicking() {
    panic!("boom in the nested call");
}

/// A nested call that panics ends only its own hold: the outer call, which
/// catches the panic, still holds the lock until it returns.
#[test]
fn a_panic_in_a_nested_call_leaves_the_outer_hold() {
    let mut other = Agent::start("process-nested-panic", None);
    let during = outer_catching(&mut other).expect("free");
    agent::assert_busy_by(&during, our_pid(), "after the nested call panicked");
    assert_eq!(other.lock(), Reply::Held, "released by the outer return");
}

// ---------------------------------------------------------------- threads

#[exclusive("process-threads-gate")]
fn gate(entered: mpsc::Sender<()>, leave: mpsc::Receiver<()>) -> Result<(), lockattr::Error> {
    entered.send(()).expect("tell the test");
    leave.recv().expect("wait for the test");
    Ok(())
}

/// Threads of one process exclude each other like processes: while one
/// thread is in the body, another thread and another process are busy.
#[test]
fn threads_of_one_process_exclude_each_other() {
    let (entered_tx, entered) = mpsc::channel();
    let (leave, leave_rx) = mpsc::channel();
    let first = std::thread::spawn(move || gate(entered_tx, leave_rx));
    entered.recv().expect("the first thread entered");

    let (tx, _never) = mpsc::channel();
    let (_keep, rx) = mpsc::channel();
    let err = std::thread::spawn(move || gate(tx, rx))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert_eq!(
        err.holder(),
        Some(&lockattr::Holder::ThisProcess { pid: our_pid() })
    );
    let mut other = Agent::start("process-threads-gate", None);
    agent::assert_busy_by(&other.lock(), our_pid(), "another process");

    leave.send(()).unwrap();
    first.join().unwrap().expect("the first thread held it");
    assert_eq!(other.lock(), Reply::Held);
}

#[exclusive("process-threads-stress")]
fn critical(inside: &AtomicU32, overlaps: &AtomicU32) -> Result<(), lockattr::Error> {
    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
        overlaps.fetch_add(1, Ordering::SeqCst);
    }
    std::thread::sleep(Duration::from_micros(50));
    inside.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// Eight threads hammer one lock: never two in the body at once.
#[test]
fn threads_never_overlap_under_contention() {
    let inside = Arc::new(AtomicU32::new(0));
    let overlaps = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (inside, overlaps) = (Arc::clone(&inside), Arc::clone(&overlaps));
            std::thread::spawn(move || {
                let (mut ran, mut busy) = (0, 0);
                for _ in 0..300 {
                    match critical(&inside, &overlaps) {
                        Ok(()) => ran += 1,
                        Err(err) if err.is_busy() => busy += 1,
                        Err(err) => panic!("{err}"),
                    }
                }
                (ran, busy)
            })
        })
        .collect();
    let (ran, busy) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(r, b), (ran, busy)| (r + ran, b + busy));
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two threads were inside at once"
    );
    assert!(
        ran > 0 && busy > 0,
        "ran {ran}, busy {busy}: no contention happened"
    );
}

// ---------------------------------------------------------- shared holds

#[exclusive("process-shared-attr", shared)]
fn read_shared() -> Result<(), lockattr::Error> {
    Ok(())
}

#[exclusive("process-shared-attr")]
fn write_exclusive() -> Result<(), lockattr::Error> {
    Ok(())
}

/// A waiting thread that got the lock exclusive for a waiter who has since
/// given up does not hand it as it is to a shared caller of this process:
/// a shared holder in another process still runs beside that caller.
#[test]
fn a_shared_caller_never_keeps_an_exclusive_lock_parked_for_a_waiter_who_left() {
    let dir = TempDir::new("parked");
    let name = "parked";
    let path = dir.path().join("parked.lock");
    let lock = dir.lock(name);
    let mut first = Agent::start(name, Some(dir.path()));
    assert_eq!(first.lock(), Reply::Held);

    // An exclusive waiter that gives up, its waiting thread left in flock(2)...
    let exclusive = std::thread::spawn(move || {
        let waited = lock
            .wait_for(Duration::from_millis(500))
            .acquire()
            .map(drop);
        waited.expect_err("busy behind the agent").is_busy()
    });
    common::until_blocked_in_kernel(&path, std::process::id());
    // ...and a shared waiter that stays.
    let (got_tx, got) = mpsc::channel();
    let (done_tx, done) = mpsc::channel::<()>();
    let shared = std::thread::spawn(move || {
        let guard = lock.shared().wait().acquire().expect("the shared waiter");
        got_tx.send(()).unwrap();
        let _ = done.recv();
        drop(guard);
    });
    assert!(
        exclusive.join().unwrap(),
        "the exclusive waiter gave up busy"
    );
    first.unlock();
    got.recv_timeout(common::PATIENCE)
        .expect("the shared waiter got it");

    let mut second = Agent::start(name, Some(dir.path()));
    assert_eq!(
        second.lock_shared(),
        Reply::Held,
        "another process's shared holder runs beside ours"
    );
    second.unlock();
    done_tx.send(()).unwrap();
    shared.join().unwrap();
}

/// Shared holders in two processes overlap; an exclusive caller in a third
/// is busy, and gets the lock once both let go.
#[test]
fn shared_holders_in_two_processes_overlap_while_exclusive_is_busy() {
    let dir = TempDir::new("shared");
    let name = common::unique_name("shared");
    let mut a = Agent::start(&name, Some(dir.path()));
    let mut b = Agent::start(&name, Some(dir.path()));
    let mut c = Agent::start(&name, Some(dir.path()));
    assert_eq!(a.lock_shared(), Reply::Held);
    assert_eq!(b.lock_shared(), Reply::Held, "shared holders overlap");
    // Either shared holder may be named, but one must be.
    match c.lock() {
        Reply::Busy(Some(pid)) => assert!(pid == a.pid() || pid == b.pid(), "holder {pid}"),
        Reply::Busy(None) if !common::NAMES_OTHER_PROCESSES => {}
        other => panic!("exclusive must be busy, naming a shared holder; got {other:?}"),
    }
    a.unlock();
    agent::assert_busy_by(&c.lock(), b.pid(), "one shared holder is enough");
    b.unlock();
    assert_eq!(c.lock(), Reply::Held);
    agent::assert_busy_by(&a.lock_shared(), c.pid(), "exclusive excludes shared");
}

/// The same with the attribute, in the default directory.
#[test]
fn shared_attribute_runs_beside_shared_processes() {
    let mut a = Agent::start("process-shared-attr", None);
    let mut b = Agent::start("process-shared-attr", None);
    assert_eq!(a.lock_shared(), Reply::Held);
    assert_eq!(b.lock_shared(), Reply::Held);
    read_shared().expect("a third shared holder runs");
    let err = write_exclusive().unwrap_err();
    match agent::holder_pid(&err) {
        Some(pid) if err.is_busy() => assert!(pid == a.pid() || pid == b.pid(), "{err}"),
        None if err.is_busy() && !common::NAMES_OTHER_PROCESSES => {}
        _ => panic!("busy, naming a shared holder: {err}"),
    }
    a.unlock();
    b.unlock();
    write_exclusive().expect("free once the shared holders let go");
}

/// Shared holds by two threads of one process: the lock stays shared-held
/// until the last of them lets go; meanwhile another process may share it
/// but not take it exclusively.
#[test]
fn shared_holders_in_threads_keep_the_lock_until_the_last_lets_go() {
    let dir = TempDir::new("shared-threads");
    let lock = dir.lock("shared-threads").shared();
    let mut other = Agent::start("shared-threads", Some(dir.path()));
    let (release_a, a) = hold_on_thread(lock);
    let (release_b, b) = hold_on_thread(lock);
    agent::assert_busy_by(&other.lock(), our_pid(), "two shared threads");
    assert_eq!(other.lock_shared(), Reply::Held, "shares with them");
    other.unlock();
    release_a.send(()).unwrap();
    a.join().unwrap();
    agent::assert_busy_by(&other.lock(), our_pid(), "one shared thread left");
    release_b.send(()).unwrap();
    b.join().unwrap();
    assert_eq!(other.lock(), Reply::Held, "free after the last one");
}

/// Holds `lock` on a new thread until told to let go.
fn hold_on_thread(lock: lockattr::Lock) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (held_tx, held) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let guard = lock.acquire().expect("a shared hold");
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(guard);
    });
    held.recv().expect("the thread took the lock");
    (release, thread)
}

#[exclusive("process-upgrade", shared)]
fn read_then_write() -> Result<Result<(), lockattr::Error>, lockattr::Error> {
    Ok(write_inside())
}

#[exclusive("process-upgrade")]
fn write_inside() -> Result<(), lockattr::Error> {
    Ok(())
}

#[exclusive("process-upgrade-wait", shared)]
fn read_then_wait_to_write() -> Result<Result<(), lockattr::Error>, lockattr::Error> {
    Ok(wait_to_write_inside())
}

#[exclusive("process-upgrade-wait", wait)]
fn wait_to_write_inside() -> Result<(), lockattr::Error> {
    Ok(())
}

/// An exclusive request inside a shared hold of the same lock: an error of
/// kind `WouldDeadlock`, never a silent downgrade or a hang, even with
/// `wait`.
#[test]
fn exclusive_inside_shared_is_would_deadlock() {
    for (what, call) in [
        ("no wait", read_then_write as fn() -> _),
        ("wait", read_then_wait_to_write),
    ] {
        let inner = within_10s(what, call).expect("the shared hold");
        let err = inner.expect_err("exclusive inside shared must be refused");
        assert_eq!(err.kind(), ErrorKind::WouldDeadlock, "{what}: {err}");
        assert!(!err.is_busy());
    }
    let mut other = Agent::start("process-upgrade", None);
    assert_eq!(other.lock(), Reply::Held, "released after the refusal");
}

#[exclusive("process-downgrade")]
fn write_then_read(other: &mut Agent) -> Result<(Reply, Reply), lockattr::Error> {
    let during = read_inside(other)?;
    let after = other.lock_shared();
    Ok((during, after))
}

#[exclusive("process-downgrade", shared)]
fn read_inside(other: &mut Agent) -> Result<Reply, lockattr::Error> {
    Ok(other.lock_shared())
}

/// A shared request inside an exclusive hold re-enters, and the hold stays
/// exclusive: another process cannot even share it, during the inner call
/// or after it.
#[test]
fn shared_inside_exclusive_reenters_and_stays_exclusive() {
    let mut other = Agent::start("process-downgrade", None);
    let (during, after) = write_then_read(&mut other).expect("re-entered");
    agent::assert_busy_by(
        &during,
        our_pid(),
        "shared by another process during the inner call",
    );
    agent::assert_busy_by(
        &after,
        our_pid(),
        "shared by another process after the inner call",
    );
    assert_eq!(other.lock_shared(), Reply::Held);
}

// ------------------------------------------------------------------ async

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime")
}

#[exclusive("process-async-tasks")]
async fn hold_task(
    entered: tokio::sync::oneshot::Sender<()>,
    leave: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), lockattr::Error> {
    entered.send(()).expect("tell the test");
    leave.await.expect("wait for the test");
    Ok(())
}

#[exclusive("process-async-tasks")]
async fn try_task() -> Result<(), lockattr::Error> {
    Ok(())
}

/// Two tasks polled on one thread exclude each other; the guard is held
/// across `.await` (another process sees it busy meanwhile).
#[test]
fn async_tasks_on_one_thread_exclude_each_other() {
    current_thread().block_on(async {
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        let (leave, leave_rx) = tokio::sync::oneshot::channel();
        let first = tokio::spawn(hold_task(entered_tx, leave_rx));
        entered.await.expect("the first task entered");

        let spawned = tokio::spawn(try_task()).await.expect("join");
        let err = spawned.expect_err("a second task is busy");
        assert!(err.is_busy(), "{err}");
        assert_eq!(
            err.holder(),
            Some(&lockattr::Holder::ThisProcess { pid: our_pid() })
        );
        let err = try_task()
            .await
            .expect_err("the block_on future is busy too");
        agent::assert_err_busy_by(&err, our_pid());
        let mut other = Agent::start("process-async-tasks", None);
        agent::assert_busy_by(&other.lock(), our_pid(), "held across .await");

        leave.send(()).expect("the first task waits");
        first.await.expect("join").expect("the first task held it");
        try_task().await.expect("free once the first task ended");
        assert_eq!(other.lock(), Reply::Held);
    });
}

#[exclusive("process-async-nested")]
async fn outer_async(other: &mut Agent) -> Result<(Reply, Reply), lockattr::Error> {
    let during = inner_async(other).await?;
    sync_inside_async()?;
    tokio::task::yield_now().await;
    let after = other.lock();
    Ok((during, after))
}

#[exclusive("process-async-nested")]
async fn inner_async(other: &mut Agent) -> Result<Reply, lockattr::Error> {
    for _ in 0..10 {
        tokio::task::yield_now().await; // may resume on another worker
    }
    Ok(other.lock())
}

#[exclusive("process-async-nested")]
fn sync_inside_async() -> Result<(), lockattr::Error> {
    Ok(())
}

/// A nested `#[exclusive]` call inside the outer future re-enters (async or
/// sync), on either runtime, while another process sees the lock busy.
#[test]
fn nested_async_call_reenters() {
    for runtime in [current_thread(), multi_thread()] {
        let other = Agent::start("process-async-nested", None);
        // Spawned, so that on the multi-thread runtime the future runs on
        // (and may move between) worker threads.
        let (replies, mut other) = runtime
            .block_on(runtime.spawn(async move {
                let mut other = other;
                (outer_async(&mut other).await, other)
            }))
            .expect("join");
        let (during, after) = replies.expect("nested calls re-enter");
        agent::assert_busy_by(&during, our_pid(), "another process during the inner call");
        agent::assert_busy_by(&after, our_pid(), "another process after the inner call");
        assert_eq!(other.lock(), Reply::Held, "released by the outer future");
    }
}

#[exclusive("process-async-join")]
async fn outer_join(barrier: Arc<tokio::sync::Barrier>) -> Result<(u32, u32), lockattr::Error> {
    let (a, b) = tokio::join!(branch(1, &barrier), branch(2, &barrier));
    Ok((a?, b?))
}

#[exclusive("process-async-join")]
async fn branch(n: u32, barrier: &tokio::sync::Barrier) -> Result<u32, lockattr::Error> {
    barrier.wait().await; // both branches are inside their holds at once
    Ok(n)
}

/// Branches of a `join!` inside the outer future share its hold.
#[test]
fn join_branches_share_the_outer_hold() {
    let result = current_thread().block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        tokio::time::timeout(Duration::from_secs(10), outer_join(barrier)).await
    });
    let (a, b) = result
        .expect("a branch was refused, so the other waited forever")
        .expect("both branches re-entered");
    assert_eq!((a, b), (1, 2));
}

#[exclusive("process-async-spawn")]
async fn outer_spawning() -> Result<Result<(), lockattr::Error>, lockattr::Error> {
    let inner = tokio::spawn(spawned_inner()).await.expect("join");
    Ok(inner)
}

#[exclusive("process-async-spawn")]
async fn spawned_inner() -> Result<(), lockattr::Error> {
    Ok(())
}

/// A task spawned from inside the hold is another holder: busy.
#[test]
fn a_spawned_task_is_another_holder() {
    for runtime in [current_thread(), multi_thread()] {
        let inner = runtime
            .block_on(outer_spawning())
            .expect("the outer future holds the lock");
        let err = inner.expect_err("the spawned task must be busy");
        agent::assert_err_busy_by(&err, our_pid());
        runtime
            .block_on(spawned_inner())
            .expect("free after the outer future");
    }
}

#[exclusive("process-async-cancel")]
async fn hold_forever(entered: tokio::sync::oneshot::Sender<()>) -> Result<(), lockattr::Error> {
    entered.send(()).expect("tell the test");
    std::future::pending::<()>().await;
    Ok(())
}

#[exclusive("process-async-panic")]
async fn explode_async() -> Result<(), lockattr::Error> {
    tokio::task::yield_now().await;
    panic!("boom in the async body");
}

/// Dropping an async holder mid-await (a timeout, a lost `select!` branch)
/// is an exit path too: the lock is free at once for another process.
#[test]
fn a_cancelled_async_holder_releases() {
    let mut other = Agent::start("process-async-cancel", None);
    current_thread().block_on(async {
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(hold_forever(entered_tx));
        entered.await.expect("the task entered");
        agent::assert_busy_by(&other.lock(), our_pid(), "while the task awaits");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    assert_eq!(other.lock(), Reply::Held, "released by the cancellation");
}

/// A panic in an async body releases the lock (the task dies, the hold
/// with it), and the thread that polled it is no holder afterwards.
#[test]
fn a_panicking_async_body_releases() {
    let mut other = Agent::start("process-async-panic", None);
    let runtime = current_thread();
    let joined = runtime.block_on(runtime.spawn(explode_async()));
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(other.lock(), Reply::Held, "released by the panic");
    other.unlock();
    let caught = std::panic::catch_unwind(|| runtime.block_on(explode_async()));
    assert!(caught.is_err());
    assert_eq!(other.lock(), Reply::Held, "released when block_on unwound");
}

// ------------------------------------------------------------------- fork

/// What a forked child found, as its exit status: tens for a try inside
/// the inherited hold (0: not tried), units for a try after leaving it.
const FORK_BUSY: i32 = 1;
const FORK_HELD: i32 = 2;
const FORK_ERROR: i32 = 3;

fn fork_code(result: Result<(), lockattr::Error>) -> i32 {
    match result {
        Err(err) if err.is_busy() => FORK_BUSY,
        Ok(()) => FORK_HELD,
        Err(_) => FORK_ERROR,
    }
}

#[exclusive("process-fork")]
fn forked_try() -> Result<(), lockattr::Error> {
    Ok(())
}

/// Takes the lock and forks twice inside the hold. The first forked child
/// leaves the inherited hold before touching lockattr, the second tries the
/// lock inside it first. In a forked child this returns `Some` (its finding
/// inside the hold, 0 when it did not try); in the parent `None`, after it
/// waited for both children and let the test probe the lock.
#[exclusive("process-fork")]
fn hold_and_fork() -> Result<Option<i32>, lockattr::Error> {
    // Re-enter once before forking, so the forked children find this call
    // site's remembered slot (the parent's) and must not use it.
    forked_try().expect("the parent re-enters");
    for try_inside in [false, true] {
        std::io::stdout().flush().expect("flush before fork");
        // SAFETY: the forked child only calls into lockattr and `_exit`s;
        // no other thread of this process takes locks.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let inside = if try_inside {
                fork_code(forked_try())
            } else {
                0
            };
            return Ok(Some(inside));
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        say(format!("FORKED {code}"));
    }
    say("READY");
    wait_for_parent();
    Ok(None)
}

fn fork_role() {
    match hold_and_fork() {
        Ok(Some(inside)) => {
            // The forked child left the inherited hold (its guard dropped):
            // that must not have unlocked the parent's lock.
            let after = fork_code(forked_try());
            // SAFETY: ends the forked child without running the parent's
            // exit handlers or flushing its inherited buffers.
            unsafe { libc::_exit(inside * 10 + after) }
        }
        Ok(None) => {
            say("RELEASED");
            wait_for_parent();
        }
        Err(err) => say(format!("FORKED failed: {err}")),
    }
}

/// After fork without exec the child is another holder: inside and after
/// its inherited hold it finds the lock busy (no re-entry), and leaving
/// that hold does not unlock the parent's lock: once the forked children
/// have exited, a third process still finds the lock held by the parent.
#[test]
fn a_forked_child_is_another_holder_and_never_unlocks_the_parent() {
    let mut other = Agent::start("process-fork", None);
    let mut parent = Kid::role("fork", &[]);
    let found = [parent.expect("FORKED").0, parent.expect("FORKED").0];
    parent.expect("READY");
    let (left, tried) = (FORK_BUSY, FORK_BUSY * 10 + FORK_BUSY);
    assert_eq!(
        found,
        [left.to_string(), tried.to_string()],
        "each forked child must find the lock busy (exit status: tens for a try inside \
         the inherited hold, units for one after leaving it; {FORK_BUSY} busy, \
         {FORK_HELD} held, {FORK_ERROR} error)"
    );
    agent::assert_busy_by(
        &other.lock(),
        parent.pid(),
        "the parent still holds after the forked child left the hold and exited",
    );
    parent.send("");
    parent.expect("RELEASED");
    assert_eq!(other.lock(), Reply::Held, "released by the parent");
    other.unlock();
    parent.send("");
    assert!(parent.finish().status.success());
}
