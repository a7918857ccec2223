//! Waiting (`wait` and `wait = "DUR"`) as other processes and threads see
//! it: no lost update under contention, bounded waits that end on time, the
//! hand-off when a holder exits or is killed, killed and cancelled waiters
//! that leave nothing behind, a bounded number of threads and descriptors,
//! threads that take turns on one descriptor, async waits that leave the
//! executor free, the "still waiting" notice, a FIFO planted during a
//! wait, and nested waits.
//!
//! Other processes are this test binary re-run in a role (see
//! `tests/common`). Each test has its own lock names (`waittest-...`): the
//! tests of this file run in parallel threads of one process. A test waits
//! for events, never for time: a line a child printed, /proc/locks listing
//! a process blocked in flock(2), a thread asleep in the kernel. Timings
//! are asserted with loose bounds (the machine may be busy) and written to
//! stderr past libtest's capture, so every run shows what it measured.

mod common;

use common::{Kid, PATIENCE, flocks, until_blocked_in_kernel};
use lockattr::{Error, Holder, Lock, LockName, exclusive};
use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Environment of a child: its lock name, which function to call, a file.
const NAME: &str = "LOCKATTR_WAITTEST_NAME";
const WHICH: &str = "LOCKATTR_WAITTEST_WHICH";
const FILE: &str = "LOCKATTR_WAITTEST_FILE";
const ROUNDS: &str = "LOCKATTR_WAITTEST_ROUNDS";

/// Upper bound for "at once" (a hand-off, a thread that ends): no polling
/// interval is involved, so anything near it means something is wrong;
/// the slack is for a busy machine.
const AT_ONCE: Duration = Duration::from_secs(1);
/// Extra time a busy machine may add to an upper bound on a timeout.
const NOISE: Duration = Duration::from_millis(500);

/// Runs in a child process started by a test below.
#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return; // run by hand with --ignored: nothing to do
    };
    let env = |key: &str| std::env::var(key).unwrap_or_else(|_| panic!("{key} is set"));
    match role.as_str() {
        "hold" => hold(&env(NAME)),
        "waiter" => waiter(&env(WHICH)),
        "try" => try_for_a_while(&env(NAME)),
        "count" => count(Path::new(&env(FILE)), env(ROUNDS).parse().expect("a count")),
        "resources" => resources(&env(NAME), false),
        "resources-async" => resources(&env(NAME), true),
        "fifo-swap" => fifo_swap(&env(NAME)),
        "cancel" => match env(WHICH).as_str() {
            "forever" => cancel(&env(NAME), cancelled_waiter),
            "bounded" => cancel(&env(NAME), cancelled_bounded_waiter),
            other => panic!("unknown waiter {other:?}"),
        },
        other => panic!("unknown role {other:?}"),
    }
}

// ------------------------------------------------------------- child side

fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write stdout");
    out.flush().expect("flush stdout");
}

/// The next line from the parent, or `None` at the end of input.
fn from_parent() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

fn until_parent_closes() {
    while from_parent().is_some() {}
}

fn runtime_lock(name: &str) -> Lock {
    Lock::new(LockName::try_new(common::leak(name)).expect("a valid lock name"))
}

/// Takes `name` (it must be free), says `READY`, then obeys: `release` lets
/// go and says `RELEASED`; `exit` ends the process still holding it (the
/// kernel drops the lock); the end of input ends it too.
fn hold(name: &str) {
    let guard = runtime_lock(name)
        .acquire()
        .unwrap_or_else(|err| panic!("the holder cannot take {name}: {err}"));
    let mut guard = Some(guard);
    say("READY");
    while let Some(line) = from_parent() {
        match line.as_str() {
            "release" => {
                drop(guard.take());
                say("RELEASED");
            }
            "exit" => std::process::exit(0),
            other => panic!("unknown holder command {other:?}"),
        }
    }
    std::process::exit(0)
}

/// The body of the waiters below: says `GOT`, then holds the lock until
/// the parent says so (or goes away).
fn got_and_hold() {
    say("GOT");
    let _ = from_parent();
}

#[exclusive("waittest-exit-holder", wait)]
fn wait_for_exiting_holder() -> Result<(), Error> {
    got_and_hold();
    Ok(())
}

#[exclusive("waittest-kill-holder", wait)]
fn wait_for_killed_holder() -> Result<(), Error> {
    got_and_hold();
    Ok(())
}

#[exclusive("waittest-kill-holder-bounded", wait = "20s")]
fn wait_bounded_for_killed_holder() -> Result<(), Error> {
    got_and_hold();
    Ok(())
}

#[exclusive("waittest-killed-waiter", wait)]
fn wait_to_be_killed() -> Result<(), Error> {
    got_and_hold();
    Ok(())
}

#[exclusive("waittest-notice", wait)]
fn notice_forever() -> Result<(), Error> {
    say("GOT");
    Ok(())
}

#[exclusive("waittest-notice", wait = "3s")]
fn notice_bounded() -> Result<(), Error> {
    say("GOT");
    Ok(())
}

#[exclusive("waittest-notice", wait = "3s")]
async fn notice_bounded_async() -> Result<(), Error> {
    say("GOT");
    Ok(())
}

#[exclusive("waittest-quiet", wait)]
fn quiet_forever() -> Result<(), Error> {
    say("GOT");
    Ok(())
}

#[exclusive("waittest-quiet", wait = "3s")]
async fn quiet_bounded_async() -> Result<(), Error> {
    say("GOT");
    Ok(())
}

/// Says `WAITING`, calls the waiting function `which`, then says
/// `RELEASED` once it returned, or `FAILED <error>`.
fn waiter(which: &str) {
    say("WAITING");
    let outcome = match which {
        "exit-holder" => wait_for_exiting_holder(),
        "kill-holder" => wait_for_killed_holder(),
        "kill-holder-bounded" => wait_bounded_for_killed_holder(),
        "killed-waiter" => wait_to_be_killed(),
        "notice-forever" => notice_forever(),
        "notice-bounded" => notice_bounded(),
        "notice-bounded-async" => current_thread().block_on(notice_bounded_async()),
        "quiet-forever" => quiet_forever(),
        "quiet-bounded-async" => current_thread().block_on(quiet_bounded_async()),
        other => panic!("unknown waiter {other:?}"),
    };
    match outcome {
        Ok(()) => say("RELEASED"),
        Err(err) => say(format!("FAILED {err}")),
    }
    until_parent_closes();
}

/// Takes `name` without waiting, retrying for up to 200 ms (a helper
/// thread of another process may still be letting go of what the kernel
/// granted it); says `HELD <attempts> <µs>` and holds it until the end of
/// input, or says `BUSY <attempts> <error>`.
fn try_for_a_while(name: &str) {
    let lock = runtime_lock(name);
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match lock.acquire() {
            Ok(guard) => {
                say(format!("HELD {attempts} {}", start.elapsed().as_micros()));
                until_parent_closes();
                drop(guard);
                return;
            }
            Err(err) if err.is_busy() && start.elapsed() < Duration::from_millis(200) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(err) => {
                say(format!("BUSY {attempts} {err}"));
                return;
            }
        }
    }
}

/// One read-modify-write of the number in `path`. The yield between read
/// and write invites another writer in, should the lock let one in.
fn add_one(path: &Path) {
    let text = std::fs::read_to_string(path).expect("read the counter");
    let n: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a torn counter: {text:?}"));
    std::thread::yield_now();
    std::fs::write(path, format!("{}\n", n + 1)).expect("write the counter");
}

#[exclusive("waittest-count-processes", wait)]
fn add_one_across_processes(path: &Path) -> Result<(), Error> {
    add_one(path);
    Ok(())
}

/// Says `READY`, waits for the parent's go, adds `rounds` to the counter,
/// says `DONE`.
fn count(path: &Path, rounds: u32) {
    say("READY");
    assert_eq!(from_parent().as_deref(), Some("go"));
    for _ in 0..rounds {
        add_one_across_processes(path).expect("wait never reports busy");
    }
    say("DONE");
    until_parent_closes();
}

#[exclusive("waittest-resources-async", wait = "50ms")]
async fn bounded_probe() -> Result<(), Error> {
    Ok(())
}

#[exclusive("waittest-resources-async", wait)]
async fn unbounded_probe() -> Result<(), Error> {
    Ok(())
}

/// Threads of this process, and how many of them lockattr named `name`.
fn threads(name: &str) -> (usize, usize) {
    let mut all = 0;
    let mut named = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("list /proc/self/task") {
        let task = task.expect("a task entry");
        all += 1;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            named += 1;
        }
    }
    (all, named)
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
}

/// In a process of its own, so the counts are this test's alone: 20 waits
/// that time out (sync `wait = "50ms"` through `Lock::wait_for`, or async:
/// 20 `wait = "50ms"` timeouts and 20 cancelled `wait`s) on a lock another
/// process holds. Says `COUNTS ...` and `TIMEDOUT`, waits for the parent's
/// `released`, watches the helper thread end, says `AFTER ...`.
fn resources(name: &str, async_waits: bool) {
    let runtime = current_thread();
    // The first look opens the slot's descriptor, which stays open between
    // holds by design: count from here.
    let first = runtime_lock(name).acquire().expect_err("the holder has it");
    assert!(first.is_busy(), "{first}");
    let (threads0, _) = threads("");
    let fds0 = descriptors();
    let (mut most_threads, mut most_helpers, mut most_fds) = (threads0, 0, fds0);
    let mut slowest = Duration::ZERO;
    let mut watch = || {
        let (all, helpers) = threads("lockattr-wait");
        most_threads = most_threads.max(all);
        most_helpers = most_helpers.max(helpers);
        most_fds = most_fds.max(descriptors());
    };
    for _ in 0..20 {
        let start = Instant::now();
        let outcome = if async_waits {
            runtime.block_on(bounded_probe())
        } else {
            runtime_lock(name)
                .wait_for(Duration::from_millis(50))
                .acquire()
                .map(drop)
        };
        slowest = slowest.max(start.elapsed());
        let err = outcome.expect_err("the holder has it");
        assert!(err.is_busy(), "{err}");
        watch();
        if async_waits {
            let cancelled = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(20), unbounded_probe()).await
            });
            assert!(cancelled.is_err(), "the holder has it");
            watch();
        }
    }
    let (_, timers) = threads("lockattr-timer");
    say(format!(
        "COUNTS {threads0} {most_threads} {most_helpers} {timers} {fds0} {most_fds} {}",
        slowest.as_millis()
    ));
    say("TIMEDOUT");
    assert_eq!(from_parent().as_deref(), Some("released"));
    let start = Instant::now();
    while threads("lockattr-wait").1 > 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let gone_after = start.elapsed();
    let ((all, helpers), (_, timers)) = (threads("lockattr-wait"), threads("lockattr-timer"));
    say(format!(
        "AFTER {all} {helpers} {timers} {} {}",
        descriptors(),
        gone_after.as_micros()
    ));
    until_parent_closes();
}

/// While a thread of this process waits (`wait = "3s"`) for `name`, held
/// by another process, the lock file is replaced by a FIFO. Then another
/// thread tries the lock once. Says `SWAPPED`, then `TRIED <ms> <outcome>`
/// and `WAITED <ms> <outcome>` as each returns.
fn fifo_swap(name: &str) {
    let path = path_of(name);
    let started = Instant::now();
    let lock = runtime_lock(name).wait_for(Duration::from_secs(3));
    let waiting = std::thread::spawn(move || {
        let outcome = lock.acquire().map(drop).map_err(|err| err.kind());
        say(format!(
            "WAITED {} {outcome:?}",
            started.elapsed().as_millis()
        ));
    });
    until_blocked_in_kernel(&path, std::process::id());
    std::fs::remove_file(&path).expect("unlink the lock file");
    let fifo = rustix::fs::FileType::Fifo;
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, &path, fifo, mode, 0).expect("mkfifo");
    say("SWAPPED");
    let start = Instant::now();
    let outcome = runtime_lock(name)
        .acquire()
        .map(drop)
        .map_err(|err| err.kind());
    say(format!("TRIED {} {outcome:?}", start.elapsed().as_millis()));
    waiting.join().expect("the waiting thread");
    until_parent_closes();
}

/// Drops `waiter()` for `name` once this process is blocked in flock(2)
/// for it, says `CANCELLED`; after the parent's `released`, waits until
/// this process has no flock on the file and no helper thread left, says
/// `SETTLED <µs>`; after `again`, waits for the lock again and says `GOT`.
fn cancel<F>(name: &str, waiter: fn() -> F)
where
    F: Future<Output = Result<(), Error>> + Send + 'static,
{
    let path = path_of(name);
    let me = std::process::id();
    let runtime = current_thread();
    runtime.block_on(async {
        let task = tokio::spawn(waiter());
        let blocked = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || until_blocked_in_kernel(&path, me))
        };
        blocked.await.expect("blocked in flock");
        assert!(!task.is_finished(), "the waiter got a held lock");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    say("CANCELLED");
    assert_eq!(from_parent().as_deref(), Some("released"));
    let start = Instant::now();
    let ours = || {
        flocks(&path)
            .into_iter()
            .filter(|(pid, _)| *pid == me)
            .count()
    };
    while threads("lockattr-wait").1 > 0 || ours() > 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "after the release this process still has {} flock(s) on the file and {} helper \
             thread(s): it kept the lock for a cancelled waiter",
            ours(),
            threads("lockattr-wait").1
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    say(format!("SETTLED {}", start.elapsed().as_micros()));
    assert_eq!(from_parent().as_deref(), Some("again"));
    let again = runtime.block_on(async { tokio::time::timeout(PATIENCE, waiter()).await });
    again
        .expect("this process can wait for the lock again")
        .expect("and gets it");
    say("GOT");
    until_parent_closes();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

// ------------------------------------------------------------ parent side

/// Writes a measurement to stderr past libtest's capture.
fn report(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "wait.rs: {line}");
}

fn holder(name: &str) -> Kid {
    let mut holder = Kid::role("hold", &[(NAME, name)]);
    holder.expect("READY");
    holder
}

fn path_of(name: &str) -> PathBuf {
    lockattr::lock_path(name).expect("the lock file's path")
}

/// Contract: a bounded wait gives up after DUR, within 10% or 50 ms,
/// whichever is larger. Never early beyond that; late by at most the
/// tolerance plus [`NOISE`] on a busy machine.
fn assert_gave_up_on_time(what: &str, limit: Duration, elapsed: Duration) {
    let tolerance = (limit / 10).max(Duration::from_millis(50));
    report(format!(
        "{what}: wait = {limit:?} gave up after {elapsed:?}"
    ));
    assert!(
        elapsed >= limit - tolerance,
        "{what}: gave up after {elapsed:?}, earlier than {limit:?} - {tolerance:?}"
    );
    assert!(
        elapsed <= limit + tolerance + NOISE,
        "{what}: gave up after {elapsed:?}, later than {limit:?} + {tolerance:?} (+ {NOISE:?} for noise)"
    );
}

/// Who a busy error must name.
enum Who {
    Process(u32),
    ThisProcess,
}

fn assert_busy_names(err: &Error, name: &str, holder: &Who) {
    assert!(err.is_busy(), "a timed-out wait is busy, not {err}");
    let text = err.to_string();
    let path = path_of(name);
    assert!(text.contains(name), "the message names the lock: {text}");
    assert!(
        text.contains(&path.display().to_string()),
        "the message names the file {}: {text}",
        path.display()
    );
    let found = match (err.holder(), holder) {
        (Some(Holder::Process { pid, .. }), Who::Process(want)) => pid == want,
        (Some(Holder::Unknown), Who::Process(_)) => !common::NAMES_OTHER_PROCESSES,
        (Some(Holder::ThisProcess { pid }), Who::ThisProcess) => *pid == std::process::id(),
        _ => false,
    };
    assert!(found, "the busy error names the wrong holder: {text}");
}

// ------------------------------------------------------ no lost update

/// 4 processes × 200 read-modify-write increments of one counter file, each
/// inside a `wait` function: every increment counts.
#[test]
fn processes_lose_no_update() {
    const PROCESSES: usize = 4;
    const ROUNDS_EACH: u32 = 200;
    let dir = common::shared_dir("wait-count");
    let counter = dir.join("counter");
    std::fs::write(&counter, "0\n").expect("create the counter");
    let counter_str = counter.to_str().expect("a UTF-8 path");
    let rounds = ROUNDS_EACH.to_string();
    let mut kids: Vec<Kid> = (0..PROCESSES)
        .map(|_| Kid::role("count", &[(FILE, counter_str), (ROUNDS, &rounds)]))
        .collect();
    for kid in &mut kids {
        kid.expect("READY");
    }
    let start = Instant::now();
    for kid in &mut kids {
        kid.send("go");
    }
    for kid in &mut kids {
        kid.expect_within("DONE", Duration::from_secs(60));
    }
    let elapsed = start.elapsed();
    let total: u64 = std::fs::read_to_string(&counter)
        .expect("read the counter")
        .trim()
        .parse()
        .expect("a number");
    report(format!(
        "{PROCESSES} processes x {ROUNDS_EACH} increments: {total} in {elapsed:?}"
    ));
    assert_eq!(
        total,
        PROCESSES as u64 * u64::from(ROUNDS_EACH),
        "lost updates"
    );
    for kid in kids {
        let finished = kid.finish();
        assert!(
            finished.status.success(),
            "a counting child failed: {finished:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[exclusive("waittest-count-threads", wait)]
fn add_one_across_threads(path: &Path) -> Result<(), Error> {
    add_one(path);
    Ok(())
}

/// 8 threads × 500 read-modify-write increments in one process.
#[test]
fn threads_lose_no_update() {
    const THREADS: usize = 8;
    const ROUNDS_EACH: u64 = 500;
    let dir = common::shared_dir("wait-count-threads");
    let counter = dir.join("counter");
    std::fs::write(&counter, "0\n").expect("create the counter");
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..ROUNDS_EACH {
                    add_one_across_threads(&counter).expect("wait never reports busy");
                }
            });
        }
    });
    let total: u64 = std::fs::read_to_string(&counter)
        .expect("read the counter")
        .trim()
        .parse()
        .expect("a number");
    report(format!(
        "{THREADS} threads x {ROUNDS_EACH} increments: {total} in {:?}",
        start.elapsed()
    ));
    assert_eq!(total, THREADS as u64 * ROUNDS_EACH, "lost updates");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------- timeouts

#[exclusive("waittest-timeout-process", wait = "300ms")]
fn bounded_behind_a_process() -> Result<(), Error> {
    Ok(())
}

#[exclusive("waittest-timeout-process", wait = "300ms")]
async fn bounded_behind_a_process_async() -> Result<(), Error> {
    Ok(())
}

#[exclusive("waittest-timeout-thread", wait = "300ms")]
fn bounded_behind_a_thread() -> Result<(), Error> {
    Ok(())
}

#[exclusive("waittest-timeout-thread", wait = "300ms")]
async fn bounded_behind_a_thread_async() -> Result<(), Error> {
    Ok(())
}

/// `wait = "300ms"` behind another process gives up on time, sync and
/// async, with a busy error that names the lock, its file and the holder.
#[test]
fn a_bounded_wait_behind_a_process_gives_up_on_time() {
    let name = "waittest-timeout-process";
    let holder = holder(name);
    let who = Who::Process(holder.pid());
    let limit = Duration::from_millis(300);

    let start = Instant::now();
    let err = bounded_behind_a_process().expect_err("the holder has it");
    assert_gave_up_on_time("sync, behind a process", limit, start.elapsed());
    assert_busy_names(&err, name, &who);

    let runtime = current_thread();
    let start = Instant::now();
    let err = runtime
        .block_on(bounded_behind_a_process_async())
        .expect_err("the holder has it");
    assert_gave_up_on_time("async, behind a process", limit, start.elapsed());
    assert_busy_names(&err, name, &who);
    drop(holder);
}

/// The same behind another thread of this process.
#[test]
fn a_bounded_wait_behind_a_thread_gives_up_on_time() {
    let name = "waittest-timeout-thread";
    let (held, release) = hold_on_a_thread(name);
    let who = Who::ThisProcess;
    let limit = Duration::from_millis(300);

    let start = Instant::now();
    let err = bounded_behind_a_thread().expect_err("the other thread has it");
    assert_gave_up_on_time("sync, behind a thread", limit, start.elapsed());
    assert_busy_names(&err, name, &who);

    let runtime = current_thread();
    let start = Instant::now();
    let err = runtime
        .block_on(bounded_behind_a_thread_async())
        .expect_err("the other thread has it");
    assert_gave_up_on_time("async, behind a thread", limit, start.elapsed());
    assert_busy_names(&err, name, &who);
    release.send(()).expect("the holding thread waits");
    held.join().expect("the holding thread");
}

/// A thread that takes `name` and holds it until told.
fn hold_on_a_thread(name: &str) -> (std::thread::JoinHandle<()>, mpsc::Sender<()>) {
    let lock = runtime_lock(name);
    let (release, released) = mpsc::channel::<()>();
    let (ready, is_ready) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let guard = lock.acquire().expect("the lock is free");
        ready.send(()).expect("the test waits");
        let _ = released.recv();
        drop(guard);
    });
    is_ready.recv().expect("the holding thread took the lock");
    (thread, release)
}

// ------------------------------------------------------------ hand-off

enum End {
    Exit,
    Kill,
}

/// A waiter process blocks behind a holder process; the holder exits or is
/// killed; the waiter must run at once. Returns the time from the holder's
/// end (the `exit` command or the SIGKILL) to the waiter's `GOT` line.
fn handoff(name: &str, which: &str, end: End) -> Duration {
    let path = path_of(name);
    let mut holder = holder(name);
    let mut waiter = Kid::role("waiter", &[(WHICH, which)]);
    waiter.expect("WAITING");
    until_blocked_in_kernel(&path, waiter.pid());
    waiter.silent_for("GOT", Duration::from_millis(100));
    let ended = match end {
        End::Exit => {
            let at = Instant::now();
            holder.send("exit");
            at
        }
        End::Kill => holder.kill(),
    };
    let (_, got) = waiter.expect("GOT");
    let latency = got.saturating_duration_since(ended);
    waiter.send("release");
    waiter.expect("RELEASED");
    latency
}

#[test]
fn a_waiting_process_runs_when_the_holder_exits() {
    let latency = handoff("waittest-exit-holder", "exit-holder", End::Exit);
    report(format!("holder exits -> waiter (wait) runs: {latency:?}"));
    assert!(
        latency < AT_ONCE,
        "the waiter ran {latency:?} after the holder exited"
    );
}

#[test]
fn a_waiting_process_runs_when_the_holder_is_killed() {
    let latency = handoff("waittest-kill-holder", "kill-holder", End::Kill);
    report(format!(
        "holder SIGKILLed -> waiter (wait) runs: {latency:?}"
    ));
    assert!(
        latency < AT_ONCE,
        "the waiter ran {latency:?} after the kill"
    );

    let latency = handoff(
        "waittest-kill-holder-bounded",
        "kill-holder-bounded",
        End::Kill,
    );
    report(format!(
        "holder SIGKILLed -> waiter (wait = \"20s\") runs: {latency:?}"
    ));
    assert!(
        latency < AT_ONCE,
        "the bounded waiter ran {latency:?} after the kill"
    );
}

/// SIGKILL a process while it waits: nothing of it stays in the kernel, a
/// second waiter runs as soon as the holder lets go, and after that the
/// lock is free for anyone at once.
#[test]
fn a_killed_waiter_leaves_nothing_behind() {
    let name = "waittest-killed-waiter";
    let path = path_of(name);
    let mut holder = holder(name);
    let mut doomed = Kid::role("waiter", &[(WHICH, "killed-waiter")]);
    doomed.expect("WAITING");
    let doomed_pid = doomed.pid();
    until_blocked_in_kernel(&path, doomed_pid);
    doomed.kill();
    assert!(!doomed.finish().status.success(), "killed");
    let left: Vec<_> = flocks(&path)
        .into_iter()
        .filter(|(pid, _)| *pid == doomed_pid)
        .collect();
    assert!(
        left.is_empty(),
        "the killed waiter is still in /proc/locks: {left:?}"
    );

    let mut next = Kid::role("waiter", &[(WHICH, "killed-waiter")]);
    next.expect("WAITING");
    until_blocked_in_kernel(&path, next.pid());
    let released = Instant::now();
    holder.send("release");
    let (_, got) = next.expect("GOT");
    let latency = got.saturating_duration_since(released);
    report(format!(
        "after a killed waiter: release -> next waiter runs: {latency:?}"
    ));
    assert!(
        latency < AT_ONCE,
        "the next waiter ran {latency:?} after the release"
    );
    next.send("release");
    next.expect("RELEASED");

    let mut other = Kid::role("try", &[(NAME, name)]);
    let (held, _) = other.expect("HELD");
    let attempts: u32 = held.split(' ').next().unwrap().parse().expect("attempts");
    assert_eq!(attempts, 1, "the lock was not free at once: HELD {held}");
    drop(other);
    drop(next);
    drop(holder);
}

/// What a process saw when its lock file became a FIFO while one of its
/// threads waited (`wait = "3s"`) behind another process: another thread's
/// try-once and the wait, each as (ms, outcome), and how long after the
/// holder let go (or would have, when it keeps the lock) the wait ended.
struct FifoSeen {
    tried: (u64, String),
    waited: (u64, String),
    after: Duration,
}

fn fifo_during_a_wait(name: &str, release: bool) -> FifoSeen {
    let mut holder = holder(name);
    let mut kid = Kid::role("fifo-swap", &[(NAME, name)]);
    kid.expect("SWAPPED");
    let (tried, _) = kid.expect_within("TRIED", AT_ONCE);
    let released = Instant::now();
    if release {
        holder.send("release");
    }
    let (waited, at) = kid.expect_within("WAITED", Duration::from_secs(3) + AT_ONCE);
    let after = at.saturating_duration_since(released);
    report(format!(
        "{name}: a FIFO in place of the lock file: try-once {tried} (ms, outcome); 3 s wait \
         {waited}, ended {after:?} after the holder {}",
        if release { "let go" } else { "kept it" }
    ));
    let split = |line: &str| {
        let (ms, outcome) = line.split_once(' ').expect("`<ms> <outcome>`");
        (ms.parse().expect("ms"), outcome.to_owned())
    };
    FifoSeen {
        tried: split(&tried),
        waited: split(&waited),
        after,
    }
}

/// SPEC: a FIFO in place of the lock file is an error, without hanging.
/// Here it appears while a thread already waits behind another process.
/// When the holder lets go, the waiter finds the file it waited for gone
/// from the path, and what is there now no lock file: the error, at once.
/// Another thread's try-once meanwhile answers at once, and nobody holds
/// a FIFO; nor does the waiter when its limit runs out first.
#[test]
fn a_fifo_in_place_of_the_file_during_a_wait_hangs_nobody() {
    let seen = fifo_during_a_wait("waittest-fifo-release", true);
    assert_eq!(
        seen.waited.1, "Err(NotRegularFile)",
        "the waiter, once the holder let go"
    );
    assert!(
        seen.after < AT_ONCE,
        "the waiter ended {:?} after the holder let go",
        seen.after
    );
    assert_ne!(seen.tried.1, "Ok(())", "a try-once locked a FIFO");

    let seen = fifo_during_a_wait("waittest-fifo", false);
    assert_ne!(seen.tried.1, "Ok(())", "a try-once locked a FIFO");
    assert_ne!(seen.waited.1, "Ok(())", "the waiter locked a FIFO");
    assert_gave_up_on_time(
        "a wait on a file replaced by a FIFO",
        Duration::from_secs(3),
        Duration::from_millis(seen.waited.0),
    );
}

/// The stricter outcome: with a FIFO at the path, nobody can hold the lock,
/// so neither the try-once of another thread nor a waiter whose limit runs
/// out may say busy (which a script would take for "try later"); both are
/// `NotRegularFile`, as for any process that comes fresh.
#[test]
fn a_fifo_in_place_of_the_file_during_a_wait_is_not_busy() {
    for (name, release) in [
        ("waittest-fifo-bug-release", true),
        ("waittest-fifo-bug", false),
    ] {
        let seen = fifo_during_a_wait(name, release);
        assert_eq!(seen.tried.1, "Err(NotRegularFile)", "{name}: try-once");
        assert_eq!(seen.waited.1, "Err(NotRegularFile)", "{name}: the wait");
    }
}

// ------------------------------------------------ threads and descriptors

/// 20 sync waits with `wait = "50ms"`, in a child process of their own,
/// behind a holder process: at most one extra thread (the one blocked in
/// flock) and no extra descriptor; the thread ends once the holder lets go,
/// and the lock is then free for another process at once.
#[test]
fn timed_out_waits_leave_at_most_one_thread_and_no_descriptor() {
    timed_out_waits_are_bounded("waittest-resources", "resources", 0);
}

/// The same with 20 async `wait = "50ms"` timeouts and 20 cancelled async
/// `wait`s; the timer thread that wakes async waiters on time is the one
/// more thread allowed, and it stays.
#[test]
fn timed_out_and_cancelled_async_waits_are_bounded_too() {
    timed_out_waits_are_bounded("waittest-resources-async", "resources-async", 1);
}

/// `lasting`: threads that may stay for good (the async timer).
fn timed_out_waits_are_bounded(name: &str, role: &str, lasting: usize) {
    let mut holder = holder(name);
    let mut kid = Kid::role(role, &[(NAME, name)]);
    let (counts, _) = kid.expect("COUNTS");
    let n: Vec<usize> = counts.split(' ').map(|n| n.parse().unwrap()).collect();
    let [
        threads0,
        most_threads,
        most_helpers,
        timers,
        fds0,
        most_fds,
        slowest_ms,
    ] = n[..]
    else {
        panic!("bad COUNTS line {counts:?}");
    };
    report(format!(
        "{role}: threads {threads0} before, at most {most_threads} during ({most_helpers} lockattr-wait, \
         {timers} lockattr-timer); descriptors {fds0} before, at most {most_fds} during; \
         slowest 50ms timeout {slowest_ms} ms"
    ));
    assert!(
        most_threads <= threads0 + lasting + 1,
        "{role}: {most_threads} threads during the waits, {threads0} before"
    );
    assert!(
        most_helpers <= 1,
        "{role}: {most_helpers} lockattr-wait threads"
    );
    assert!(
        most_fds <= fds0,
        "{role}: {most_fds} descriptors, {fds0} before"
    );
    kid.expect("TIMEDOUT");

    holder.send("release");
    holder.expect("RELEASED");
    kid.send("released");
    let (after, _) = kid.expect("AFTER");
    let n: Vec<u128> = after.split(' ').map(|n| n.parse().unwrap()).collect();
    let [threads, helpers, timers, fds, gone_us] = n[..] else {
        panic!("bad AFTER line {after:?}");
    };
    report(format!(
        "{role}: after the release {threads} threads ({helpers} lockattr-wait, {timers} \
         lockattr-timer), {fds} descriptors; the helper ended within {gone_us} µs"
    ));
    assert_eq!(
        helpers, 0,
        "{role}: the helper thread outlived the holder by 2 s"
    );
    assert!(
        threads as usize <= threads0 + lasting,
        "{role}: {threads} threads after, {threads0} before"
    );
    assert!(
        fds as usize <= fds0,
        "{role}: {fds} descriptors after, {fds0} before"
    );

    let mut other = Kid::role("try", &[(NAME, name)]);
    let (held, _) = other.expect("HELD");
    report(format!(
        "{role}: then another process: HELD {held} (attempts, µs)"
    ));
    let attempts: u32 = held.split(' ').next().unwrap().parse().expect("attempts");
    assert_eq!(
        attempts, 1,
        "the waiting process kept the lock: HELD {held}"
    );
}

struct Turns {
    inside: AtomicU32,
    order: Mutex<Vec<usize>>,
    /// The thread ids of the threads that called.
    callers: Mutex<Vec<i32>>,
}

impl Turns {
    fn take(&self, me: usize) -> Result<(), Error> {
        let before = self.inside.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "two threads inside at once");
        self.order.lock().unwrap().push(me);
        std::thread::sleep(Duration::from_millis(20));
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[exclusive("waittest-turns", wait)]
fn take_turn(turns: &Turns, me: usize) -> Result<(), Error> {
    turns.take(me)
}

#[exclusive("waittest-one-open", wait)]
fn take_turn_opening_once(turns: &Turns, me: usize) -> Result<(), Error> {
    turns.take(me)
}

/// What [`wait_in_turn`] saw.
struct TurnsSeen {
    order: Vec<usize>,
    /// From the lock holder's release to the last thread's return.
    all_done: Duration,
    /// Most descriptors this process had open on the lock file at once,
    /// sampled every 200 µs.
    most_fds: usize,
    /// Most flock(2) entries (held or waiting) of this process on the file
    /// at once, sampled likewise from /proc/locks.
    most_requests: usize,
    /// Opens of the lock file while the test ran, from inotify (the holder
    /// process opened it before): each one, however brief, is counted.
    opens: usize,
}

/// Four threads call `turn` (a `wait` function on `name`) while another
/// process holds `name`; once every thread waits, the holder lets go.
fn wait_in_turn(name: &str, turn: fn(&Turns, usize) -> Result<(), Error>) -> TurnsSeen {
    use rustix::fs::inotify;
    const THREADS: usize = 4;
    let path = path_of(name);
    let mut holder = holder(name);
    let me = std::process::id();
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .expect("inotify_init1");
    // CLOSE_NOWRITE too, so that two opens are never adjacent in the queue
    // (inotify merges an event identical to the one queued last).
    let flags = inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE_NOWRITE;
    inotify::add_watch(&watch, &path, flags).expect("inotify_add_watch");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (stop, path) = (Arc::clone(&stop), path.clone());
        move || {
            let (mut most_fds, mut most_requests) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                most_fds = most_fds.max(common::descriptors_on(&path));
                let ours = flocks(&path).iter().filter(|(pid, _)| *pid == me).count();
                most_requests = most_requests.max(ours);
                std::thread::sleep(Duration::from_micros(200));
            }
            (most_fds, most_requests)
        }
    });
    let turns = Arc::new(Turns {
        inside: AtomicU32::new(0),
        order: Mutex::new(Vec::new()),
        callers: Mutex::new(Vec::new()),
    });
    let (done, finished) = mpsc::channel();
    for i in 0..THREADS {
        let (turns, done) = (Arc::clone(&turns), done.clone());
        std::thread::spawn(move || {
            turns.callers.lock().unwrap().push(common::tid());
            let outcome = turn(&turns, i).map_err(|err| err.to_string());
            let _ = done.send(outcome);
        });
    }
    until_blocked_in_kernel(&path, me);
    let start = Instant::now();
    while turns.callers.lock().unwrap().len() < THREADS {
        assert!(start.elapsed() < PATIENCE, "the threads never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    common::until_threads_sleep(&turns.callers.lock().unwrap());
    assert!(
        turns.order.lock().unwrap().is_empty(),
        "a thread ran while held"
    );
    let released = Instant::now();
    holder.send("release");
    for _ in 0..THREADS {
        let outcome = finished
            .recv_timeout(PATIENCE)
            .expect("every thread gets the lock in turn");
        outcome.expect("wait never reports busy");
    }
    let all_done = released.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (most_fds, most_requests) = sampler.join().expect("the sampler");
    let mut opens = 0;
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut events = inotify::Reader::new(&watch, &mut buf);
    while let Ok(event) = events.next() {
        if event.events().contains(inotify::ReadFlags::OPEN) {
            opens += 1;
        }
    }
    let order = turns.order.lock().unwrap().clone();
    report(format!(
        "{name}: {THREADS} threads took turns {order:?} in {all_done:?} after the release \
         (20 ms each); at most {most_fds} descriptor(s) on the file and {most_requests} \
         flock entry(ies) at once; {opens} open(s) of the file"
    ));
    let distinct: BTreeSet<usize> = order.iter().copied().collect();
    assert_eq!(distinct.len(), THREADS, "each thread ran once: {order:?}");
    assert_eq!(order.len(), THREADS, "each thread ran once: {order:?}");
    TurnsSeen {
        order,
        all_done,
        most_fds,
        most_requests,
        opens,
    }
}

/// Four threads wait for a lock another process holds: each gets it in
/// turn once the holder lets go, never two at once, and the process never
/// has more than one flock(2) request on the file in the kernel: the
/// threads wait inside the process, behind one helper blocked in flock.
#[test]
fn threads_take_turns_behind_one_flock_request() {
    let seen = wait_in_turn("waittest-turns", take_turn);
    assert!(
        seen.most_requests <= 1,
        "{} flock requests of this process at once",
        seen.most_requests
    );
    assert!(
        seen.all_done < Duration::from_millis(80) + AT_ONCE,
        "four turns of 20 ms took {:?} ({:?})",
        seen.all_done,
        seen.order
    );
}

/// The same, stricter: while the threads wait, the process opens the lock
/// file once (its one descriptor) and never has a second descriptor on it.
#[test]
fn waiting_threads_open_the_lock_file_once() {
    let seen = wait_in_turn("waittest-one-open", take_turn_opening_once);
    assert!(
        seen.opens <= 1,
        "the lock file was opened {} times while 4 threads waited",
        seen.opens
    );
    assert!(
        seen.most_fds <= 1,
        "{} descriptors on the lock file at once",
        seen.most_fds
    );
}

// --------------------------------------------------------------- async

#[exclusive("waittest-tick-process", wait)]
async fn tick_waiter_behind_a_process() -> Result<Instant, Error> {
    Ok(Instant::now())
}

#[exclusive("waittest-tick-thread", wait = "30s")]
async fn tick_waiter_behind_a_thread() -> Result<Instant, Error> {
    Ok(Instant::now())
}

/// On a current-thread runtime: a ticking task and `waiter` run together;
/// after 600 ms `release` runs. Returns the ticks during the wait and the
/// time from the release to the waiter's body.
///
/// The runtime runs on a thread of its own and reports over channels, each
/// read with a timeout: should the waiter block the executor, its 600 ms
/// sleep never ends and this fails saying so, instead of hanging.
fn tick_while_waiting<F>(waiter: F, release: impl FnOnce()) -> (u32, Duration)
where
    F: Future<Output = Result<Instant, Error>> + Send + 'static,
{
    let (slept_tx, slept) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let executor = std::thread::spawn(move || {
        current_thread().block_on(async move {
            let ticks = Arc::new(AtomicU32::new(0));
            let ticker = tokio::spawn({
                let ticks = Arc::clone(&ticks);
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ticks.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            let waiter = tokio::spawn(waiter);
            tokio::time::sleep(Duration::from_millis(600)).await;
            let ticked = ticks.load(Ordering::SeqCst);
            let _ = slept_tx.send((ticked, waiter.is_finished()));
            let got = tokio::time::timeout(PATIENCE, waiter).await;
            ticker.abort();
            let _ = done_tx.send(got);
        })
    });
    let (ticked, finished) = slept.recv_timeout(PATIENCE).unwrap_or_else(|why| {
        panic!(
            "the executor was blocked: its 600 ms sleep did not end within {PATIENCE:?} ({why:?})"
        )
    });
    assert!(!finished, "the waiter ran while the lock was held");
    let released = Instant::now();
    release();
    let got = done
        .recv_timeout(PATIENCE * 2)
        .unwrap_or_else(|why| panic!("the runtime did not finish after the release ({why:?})"))
        .expect("the waiter gets the lock once it is free")
        .expect("the waiting task")
        .expect("wait never reports busy");
    executor.join().expect("the runtime's thread");
    (ticked, got.saturating_duration_since(released))
}

/// An async `wait` on a current-thread runtime leaves the thread to the
/// other tasks: a task ticking every 10 ms keeps ticking (about 60 times in
/// 600 ms); the waiter runs once the holder — another process, or another
/// thread with `wait = "30s"` — lets go.
#[test]
fn an_async_wait_leaves_the_executor_free() {
    let mut holder = holder("waittest-tick-process");
    let (ticked, latency) =
        tick_while_waiting(tick_waiter_behind_a_process(), || holder.send("release"));
    report(format!(
        "async wait behind a process: {ticked} ticks of 10 ms in 600 ms; release -> waiter runs: {latency:?}"
    ));
    assert!(
        ticked >= 20,
        "the executor was blocked: {ticked} ticks in 600 ms"
    );
    assert!(
        latency < AT_ONCE,
        "the waiter ran {latency:?} after the release"
    );

    let (held, release) = hold_on_a_thread("waittest-tick-thread");
    let (ticked, latency) = tick_while_waiting(tick_waiter_behind_a_thread(), || {
        release.send(()).expect("the holding thread waits")
    });
    held.join().expect("the holding thread");
    report(format!(
        "async wait = \"30s\" behind a thread: {ticked} ticks of 10 ms in 600 ms; release -> waiter runs: {latency:?}"
    ));
    assert!(
        ticked >= 20,
        "the executor was blocked: {ticked} ticks in 600 ms"
    );
    assert!(
        latency < AT_ONCE,
        "the waiter ran {latency:?} after the release"
    );
}

#[exclusive("waittest-cancel", wait)]
async fn cancelled_waiter() -> Result<(), Error> {
    Ok(())
}

#[exclusive("waittest-cancel-bounded", wait = "30s")]
async fn cancelled_bounded_waiter() -> Result<(), Error> {
    Ok(())
}

/// Dropping a waiting future cancels the wait. In a process of its own
/// (so that its threads and flocks are this test's alone), a waiter is seen
/// blocked in flock(2), then dropped; the holder lets go; once that process
/// has neither a flock nor a helper thread left, another process takes the
/// lock at its first attempt (nobody kept it for a forgotten waiter), and
/// the first process can still wait for it afterwards.
#[test]
fn a_dropped_waiting_future_takes_nothing_later() {
    cancel_then_release("waittest-cancel", "forever");
    cancel_then_release("waittest-cancel-bounded", "bounded");
}

fn cancel_then_release(name: &str, which: &str) {
    let mut holder = holder(name);
    let mut cancelling = Kid::role("cancel", &[(NAME, name), (WHICH, which)]);
    cancelling.expect("CANCELLED");
    holder.send("release");
    holder.expect("RELEASED");
    cancelling.send("released");
    let (settled, _) = cancelling.expect("SETTLED");
    let mut other = Kid::role("try", &[(NAME, name)]);
    let (held, _) = other.expect("HELD");
    report(format!(
        "{name}: cancelled while blocked in flock; after the release its process let go \
         within {settled} µs; then another process: HELD {held} (attempts, µs)"
    ));
    let attempts: u32 = held.split(' ').next().unwrap().parse().expect("attempts");
    assert_eq!(
        attempts, 1,
        "the lock was not free at once after the cancelled waiter's process let go: HELD {held}"
    );
    drop(other);
    cancelling.send("again");
    cancelling.expect("GOT");
}

#[exclusive("waittest-send", wait = "30s")]
async fn send_waiter() -> Result<(), Error> {
    let across_await = String::from("held across .await");
    tokio::task::yield_now().await;
    assert!(!across_await.is_empty());
    Ok(())
}

#[exclusive("waittest-send-forever", wait)]
async fn send_waiter_forever() -> Result<(), Error> {
    tokio::task::yield_now().await;
    Ok(())
}

fn assert_send<F: Future + Send>(future: F) -> F {
    future
}

/// The future of a waiting async fn is `Send` (this compiles), so a
/// multi-thread runtime can move it between threads while it waits.
#[test]
fn a_waiting_future_is_send() {
    drop(assert_send(cancelled_waiter()));
    drop(assert_send(send_waiter_forever()));
    let name = "waittest-send";
    let mut holder = holder(name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let task = runtime.spawn(assert_send(send_waiter()));
    until_blocked_in_kernel(&path_of(name), std::process::id());
    assert!(
        !task.is_finished(),
        "the waiter ran while the lock was held"
    );
    holder.send("release");
    let outcome = runtime.block_on(async { tokio::time::timeout(PATIENCE, task).await });
    outcome
        .expect("the waiter got the lock")
        .expect("the waiting task")
        .expect("wait never reports busy");
}

// -------------------------------------------------------------- notice

/// Waiters still blocked after a second say so once each on stderr: the
/// lock, its file, the holder's pid, and for `wait = "3s"` how long they
/// will wait. The holder lets go once every waiter has said so.
#[test]
fn a_long_wait_says_so_once() {
    let name = "waittest-notice";
    let path = path_of(name).display().to_string();
    let mut holder = holder(name);
    let whiches = ["notice-forever", "notice-bounded", "notice-bounded-async"];
    let mut waiters: Vec<Kid> = whiches
        .iter()
        .map(|which| Kid::role("waiter", &[(WHICH, which)]))
        .collect();
    let mut notices = Vec::new();
    for waiter in &mut waiters {
        let (_, waiting) = waiter.expect("WAITING");
        let (line, at) = waiter.expect_stderr(name);
        notices.push((line, at.saturating_duration_since(waiting)));
    }
    holder.send("release");
    holder.expect("RELEASED");
    for ((which, mut waiter), (notice, after)) in whiches.into_iter().zip(waiters).zip(notices) {
        waiter.expect("GOT");
        waiter.expect("RELEASED");
        let finished = waiter.finish();
        assert!(finished.status.success(), "{which}: {finished:?}");
        let lines: Vec<&str> = finished
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        report(format!("{which}: after {after:?}: {lines:?}"));
        assert_eq!(
            lines,
            [notice.as_str()],
            "{which}: one line on stderr, the notice"
        );
        assert!(
            after >= Duration::from_millis(500) && after < Duration::from_secs(10),
            "{which}: the notice came {after:?} into the wait, not after about a second"
        );
        assert!(
            notice.contains("waiting for lock"),
            "{which}: says it is waiting: {notice}"
        );
        assert!(notice.contains(name), "{which}: names the lock: {notice}");
        assert!(
            notice.contains(&path),
            "{which}: names the file {path}: {notice}"
        );
        common::assert_names_pid(&notice, holder.pid());
        if which.contains("bounded") {
            assert!(
                notice.contains("3s"),
                "{which}: says how long it waits: {notice}"
            );
        }
    }
}

/// A waiter that gets the lock within the second says nothing. Each waiter
/// is seen blocked in flock(2) (as `->` in /proc/locks) before the holder
/// lets go, so it really waited.
#[test]
fn a_short_wait_says_nothing() {
    let name = "waittest-quiet";
    let path = path_of(name);
    let mut holder = holder(name);
    let whiches = ["quiet-forever", "quiet-bounded-async"];
    let mut waiters: Vec<Kid> = whiches
        .iter()
        .map(|which| Kid::role("waiter", &[(WHICH, which)]))
        .collect();
    let mut started = Vec::new();
    for waiter in &mut waiters {
        started.push(waiter.expect("WAITING").1);
        until_blocked_in_kernel(&path, waiter.pid());
    }
    holder.send("release");
    for ((which, mut waiter), started) in whiches.into_iter().zip(waiters).zip(started) {
        let (_, got) = waiter.expect("GOT");
        let waited = got.saturating_duration_since(started);
        report(format!("{which}: waited {waited:?}, blocked in flock"));
        assert!(
            waited < Duration::from_secs(1),
            "{which}: waited {waited:?}, long enough for the notice: the machine is too busy \
             for this test"
        );
        waiter.expect("RELEASED");
        let finished = waiter.finish();
        assert!(finished.status.success(), "{which}: {finished:?}");
        assert!(
            !finished.stderr.contains("waiting for lock") && !finished.stderr.contains(name),
            "{which}: a wait under a second says nothing, but: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.trim().is_empty(),
            "{which}: nothing on stderr, but: {}",
            finished.stderr
        );
    }
}

// -------------------------------------------------------------- nested

#[exclusive("waittest-nested", wait)]
fn nested_outer() -> Result<u32, Error> {
    Ok(nested_bounded()? + 1)
}

#[exclusive("waittest-nested", wait = "5s")]
fn nested_bounded() -> Result<u32, Error> {
    Ok(nested_inner()? + 1)
}

#[exclusive("waittest-nested", wait)]
fn nested_inner() -> Result<u32, Error> {
    Ok(1)
}

#[exclusive("waittest-nested-async", wait)]
async fn nested_async_outer() -> Result<u32, Error> {
    Ok(nested_async_bounded().await? + nested_async_sync()?)
}

#[exclusive("waittest-nested-async", wait = "5s")]
async fn nested_async_bounded() -> Result<u32, Error> {
    Ok(nested_async_sync()? + 1)
}

#[exclusive("waittest-nested-async", wait)]
fn nested_async_sync() -> Result<u32, Error> {
    Ok(1)
}

/// A waiting function called while its caller already holds the lock
/// re-enters at once (a bounded wait of 5 s would otherwise time out, a
/// `wait` would hang), and the lock is free when the outermost returns.
#[test]
fn a_nested_wait_re_enters_at_once() {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let sync = nested_outer().map_err(|e| e.to_string());
        let sync_took = start.elapsed();
        let start = Instant::now();
        let nested = current_thread().block_on(nested_async_outer());
        let nested = nested.map_err(|e| e.to_string());
        let _ = done.send((sync, sync_took, nested, start.elapsed()));
    });
    let (sync, sync_took, nested, async_took) = result
        .recv_timeout(Duration::from_secs(20))
        .expect("a nested wait deadlocked");
    report(format!(
        "nested waits: sync {sync:?} in {sync_took:?}, async {nested:?} in {async_took:?}"
    ));
    assert_eq!(sync, Ok(3));
    assert_eq!(nested, Ok(3));
    assert!(
        sync_took < AT_ONCE && async_took < AT_ONCE,
        "a nested call waited"
    );
    for name in ["waittest-nested", "waittest-nested-async"] {
        let free = std::thread::spawn(move || runtime_lock(name).acquire().map(drop))
            .join()
            .expect("a thread");
        free.unwrap_or_else(|err| panic!("{name} is still held after the outermost call: {err}"));
    }
}

/// An async wait that is dropped (a timeout, a `select!` branch that lost)
/// leaves no waker behind in the lock: the task it belonged to can be
/// freed even while the lock stays held and others wait on.
#[test]
fn a_dropped_async_wait_leaves_no_waker_behind() {
    struct Counted;
    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {}
    }
    let lock = Lock::new(LockName::new("wait-waker")).wait();
    let (release, held) = mpsc::channel::<()>();
    let (ready_tx, ready) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _guard = lock.acquire().expect("the holder takes the free lock");
        ready_tx.send(()).unwrap();
        let _ = held.recv();
    });
    ready.recv().unwrap();

    let mut staying = Box::pin(lock.acquire_async());
    let stays = Arc::new(Counted);
    let waker = std::task::Waker::from(stays.clone());
    let pending = staying
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&waker));
    assert!(pending.is_pending(), "busy while the thread holds it");
    for _ in 0..20 {
        let counted = Arc::new(Counted);
        let waker = std::task::Waker::from(counted.clone());
        let mut wait = Box::pin(lock.acquire_async());
        let pending = wait
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        assert!(pending.is_pending(), "busy while the thread holds it");
        drop(wait);
        drop(waker);
        assert_eq!(Arc::strong_count(&counted), 1, "the lock kept a waker");
    }
    drop(staying);
    drop(waker);
    assert_eq!(Arc::strong_count(&stays), 1, "the lock kept a waker");
    release.send(()).unwrap();
    holder.join().unwrap();
}
