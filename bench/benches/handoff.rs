//! Hand-off latency (issue 3): from the holder's release to the waiter
//! running in another process, for `wait` and `wait = "DUR"` against
//! `flock(1) -w` and Python's `filelock`, all measured in one run:
//! `bench/handoff.sh` (installs `filelock` from PyPI if missing), or
//! `cargo bench -p lockattr-bench --bench handoff [-- --rounds N | --quick]`.
//!
//! One round per waiter, the waiters interleaved round by round so that
//! drift on a busy machine hits all of them alike:
//!
//! 1. this process (the holder) takes the waiter's lock file with a plain
//!    blocking flock(2) (every waiter below locks the file with flock(2));
//! 2. the waiter, in another process, starts waiting; the holder waits
//!    until the kernel lists a blocked flock on the file in /proc/locks,
//!    then `--settle` more (default 20 ms). Python's filelock never blocks
//!    in the kernel: it retries `LOCK_NB` every 50 ms, so for it the holder
//!    waits a random 100-150 ms instead, spreading the release evenly over
//!    the polling phase;
//! 3. the holder reads the clock and unlocks;
//! 4. the waiter reads the same clock as the first thing it does once it
//!    has the lock and reports it: the sample is the difference.
//!
//! Why settle: a waiter that has waited a while sleeps on an idle CPU, and
//! waking an idle CPU costs more than waking a busy one (1 ms gives lower
//! numbers than 20 ms or longer here; `--settle 1` shows them). And reading
//! /proc/locks takes the kernel's file-lock rwsem for writing, which
//! waits for an RCU grace period and puts every flock(2) on the machine on
//! a slower path for a while; the pause lets that pass before the release.
//!
//! The clock is CLOCK_MONOTONIC (one for all processes of the machine),
//! except for the shell row: bash's `$EPOCHREALTIME` is CLOCK_REALTIME in
//! microseconds, so the holder reads CLOCK_REALTIME for that row.
//!
//! The waiters:
//!
//! - the floor: the same long-lived process as lockattr's below, blocked
//!   in a plain flock(2) on a descriptor it opened once, no library: what
//!   the kernel and the scheduler cost.
//! - lockattr: one long-lived process (this binary, `--child waiter`)
//!   calling an `#[exclusive(.., wait)]` or `wait = "30s"` fn, sync, and
//!   async (polled by a minimal thread-parking `block_on`); the stamp is
//!   the body's first statement.
//! - `flock -w 10 FILE CMD`, one flock(1) per round as scripts write it;
//!   CMD is this binary (`--child stamp`), which reads the clock first
//!   thing in `main`. So the row includes flock(1)'s fork and exec of CMD
//!   and CMD's start-up, which is what such a script sees; the
//!   "start-up of CMD alone" row measures that part on its own (the holder
//!   spawns CMD directly, no lock).
//! - `flock -w 10 9` in one long-lived bash that opened the file as fd 9
//!   (`exec 9<FILE`): flock(1) is already running and blocked when the
//!   holder lets go; then it exits and bash reads `$EPOCHREALTIME` (a
//!   builtin, no exec). This is the lock hand-off plus flock(1)'s exit and
//!   bash's return from waitpid.
//! - Python `filelock` (`FileLock(path, timeout=10)`, defaults): one
//!   long-lived interpreter; the stamp is `time.clock_gettime_ns` right
//!   after `acquire()` returns, so no interpreter start-up is counted.

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::time::{ClockId, clock_gettime};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process.
fn now_ns() -> i128 {
    clock_ns(ClockId::Monotonic)
}

fn clock_ns(clock: ClockId) -> i128 {
    let t = clock_gettime(clock);
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

// ---------------------------------------------------------------------------
// The lockattr waiter process.

#[lockattr::exclusive("handoff-wait", wait)]
fn wait_forever() -> Result<i128, lockattr::Error> {
    Ok(now_ns())
}

#[lockattr::exclusive("handoff-wait-dur", wait = "30s")]
fn wait_bounded() -> Result<i128, lockattr::Error> {
    Ok(now_ns())
}

#[lockattr::exclusive("handoff-async-wait", wait)]
async fn wait_forever_async() -> Result<i128, lockattr::Error> {
    Ok(now_ns())
}

#[lockattr::exclusive("handoff-async-wait-dur", wait = "30s")]
async fn wait_bounded_async() -> Result<i128, lockattr::Error> {
    Ok(now_ns())
}

/// The smallest executor: poll, and park the thread until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// The floor: a blocking flock(2) on a descriptor opened once.
fn raw_flock() -> Result<i128, lockattr::Error> {
    static FD: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    let fd = FD.get_or_init(|| {
        let dir = std::env::var_os("LOCKATTR_DIR").expect("LOCKATTR_DIR is set");
        let path = Path::new(&dir).join("handoff-raw.lock");
        rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).expect("open")
    });
    rustix::fs::flock(fd, FlockOperation::LockExclusive).expect("flock");
    let ran = now_ns();
    rustix::fs::flock(fd, FlockOperation::Unlock).expect("unlock");
    Ok(ran)
}

/// Reads a candidate name per line; says `WAITING`, waits for that lock,
/// says `RAN <ns>` (the body's clock reading) once it let go again.
fn lockattr_waiter() {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        writeln!(out, "WAITING")
            .and_then(|()| out.flush())
            .expect("stdout");
        let ran = match line.trim() {
            "wait" => wait_forever(),
            "wait-dur" => wait_bounded(),
            "async-wait" => block_on(wait_forever_async()),
            "async-wait-dur" => block_on(wait_bounded_async()),
            "raw" => raw_flock(),
            other => panic!("unknown waiter {other:?}"),
        };
        let ran = ran.expect("wait never reports busy");
        writeln!(out, "RAN {ran}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}

fn child(args: &[String]) {
    match args.first().map(String::as_str) {
        // First thing: the clock. Then the rest of main may take its time.
        Some("stamp") => println!("RAN {}", now_ns()),
        Some("waiter") => lockattr_waiter(),
        other => panic!("unknown child {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The holder's side.

const FILELOCK_WAITER: &str = r#"
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=10)
for line in sys.stdin:
    print("WAITING", flush=True)
    with lock:
        ran = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    print("RAN", ran, flush=True)
"#;

/// The bash waiter: `$1` is the lock file. `$EPOCHREALTIME` is seconds
/// with six decimals; the holder turns it into nanoseconds.
const FLOCK_FD_WAITER: &str = r#"
exec 9<"$1"
while read -r _; do
    echo WAITING
    flock -w 10 9 || exit 1
    echo "RAN $EPOCHREALTIME"
    flock -u 9
done
"#;

/// A long-lived waiter process talking by lines.
struct Waiter {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Waiter {
    fn start(mut cmd: Command) -> Waiter {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a waiter");
        Waiter {
            stdin: child.stdin.take().expect("piped"),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .expect("write to the waiter");
    }

    fn expect(&mut self, word: &str) -> String {
        read_word(&mut self.stdout, word)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines up to one that starts with `word`; returns the rest.
fn read_word(out: &mut impl BufRead, word: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read a waiter");
        assert!(n > 0, "the waiter ended before saying {word}");
        if let Some(rest) = line.trim_end().strip_prefix(word) {
            return rest.trim().to_owned();
        }
    }
}

/// The lock file's key as /proc/locks prints it: `MAJOR:MINOR:INODE`.
fn lock_key(path: &Path) -> String {
    let meta = std::fs::metadata(path).expect("stat a lock file");
    format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(meta.dev()),
        rustix::fs::minor(meta.dev()),
        meta.ino()
    )
}

/// Whether /proc/locks lists a flock(2) waiter blocked on `key`.
fn blocked_on(key: &str) -> bool {
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields.as_slice(), [_, "->", "FLOCK", _, _, _, k, ..] if *k == key)
    })
}

/// Waits until a waiter is blocked in flock(2) on `key`, then `settle`
/// more: how long the waiter has waited when the holder lets go.
fn until_blocked(key: &str, settle: Duration) {
    let start = Instant::now();
    while !blocked_on(key) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no waiter ever blocked in flock(2)"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(settle);
}

/// The holder's descriptor on one lock file.
struct Holder {
    fd: OwnedFd,
    key: String,
}

impl Holder {
    fn new(path: &Path) -> Holder {
        let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o644)).expect("open");
        Holder {
            fd,
            key: lock_key(path),
        }
    }

    fn lock(&self) {
        rustix::fs::flock(&self.fd, FlockOperation::LockExclusive).expect("flock");
    }

    /// Unlocks; returns the reading of `clock` just before.
    fn release(&self, clock: ClockId) -> i128 {
        let at = clock_ns(clock);
        rustix::fs::flock(&self.fd, FlockOperation::Unlock).expect("unlock");
        at
    }
}

/// A small xorshift, for the random pause before filelock's release.
struct Jitter(u64);

impl Jitter {
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// The long-lived waiter process (this binary): which function.
    InWaiter(&'static str),
    FlockCmd,
    FlockFd,
    FileLock,
    /// No lock: the start-up of the flock(1) row's CMD, spawned directly.
    StartUp,
}

struct Candidate {
    label: &'static str,
    kind: Kind,
    /// The release-to-running samples, in nanoseconds.
    samples: Vec<i128>,
    holder: Holder,
    path: PathBuf,
}

struct Run {
    exe: PathBuf,
    dir: PathBuf,
    lockattr: Waiter,
    flock_fd: Option<Waiter>,
    filelock: Option<Waiter>,
    jitter: Jitter,
    settle: Duration,
}

/// Asks a long-lived waiter to wait, waits as `settle` says, releases and
/// returns the waiter's reading minus the holder's.
fn round_with(
    waiter: &mut Waiter,
    holder: &Holder,
    command: &str,
    settle: impl FnOnce(),
    clock: ClockId,
    parse: impl Fn(&str) -> i128,
) -> i128 {
    holder.lock();
    waiter.send(command);
    waiter.expect("WAITING");
    settle();
    let released = holder.release(clock);
    let ran = parse(&waiter.expect("RAN"));
    ran - released
}

fn parse_ns(text: &str) -> i128 {
    text.parse().expect("a clock reading in ns")
}

/// `$EPOCHREALTIME`, `SECONDS.MICROS`, in nanoseconds.
fn parse_epoch(text: &str) -> i128 {
    let (secs, micros) = text.split_once(['.', ',']).expect("SECONDS.MICROS");
    let secs: i128 = secs.parse().expect("seconds");
    let micros: i128 = micros.parse().expect("microseconds");
    secs * 1_000_000_000 + micros * 1_000
}

impl Run {
    fn round(&mut self, candidate: &mut Candidate) {
        let settle = self.settle;
        let holder = &candidate.holder;
        let key = holder.key.clone();
        let sample = match candidate.kind {
            Kind::InWaiter(which) => round_with(
                &mut self.lockattr,
                holder,
                which,
                || until_blocked(&key, settle),
                ClockId::Monotonic,
                parse_ns,
            ),
            Kind::FlockFd => round_with(
                self.flock_fd.as_mut().expect("flock(1) is installed"),
                holder,
                "go",
                || until_blocked(&key, settle),
                ClockId::Realtime,
                parse_epoch,
            ),
            Kind::FileLock => {
                let pause = Duration::from_millis(100 + self.jitter.next_below(50));
                round_with(
                    self.filelock.as_mut().expect("filelock is installed"),
                    holder,
                    "go",
                    || std::thread::sleep(pause),
                    ClockId::Monotonic,
                    parse_ns,
                )
            }
            Kind::FlockCmd => {
                holder.lock();
                let mut flock = Command::new("flock");
                flock.args(["-w", "10"]).arg(&candidate.path).arg(&self.exe);
                let mut flock = self.spawn_stamp(flock);
                until_blocked(&key, settle);
                let released = holder.release(ClockId::Monotonic);
                self.read_stamp(&mut flock) - released
            }
            Kind::StartUp => {
                let spawned = now_ns();
                let mut stamp = self.spawn_stamp(Command::new(&self.exe));
                self.read_stamp(&mut stamp) - spawned
            }
        };
        candidate.samples.push(sample);
    }

    /// Starts `cmd` with `--child stamp` appended: this binary's stamp, run
    /// directly or by flock(1).
    fn spawn_stamp(&self, mut cmd: Command) -> Child {
        cmd.args(["--child", "stamp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the stamp")
    }

    fn read_stamp(&self, child: &mut Child) -> i128 {
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let ran = parse_ns(&read_word(&mut out, "RAN"));
        let status = child.wait().expect("wait for the stamp");
        assert!(status.success(), "the stamp failed: {status}");
        ran
    }
}

fn filelock_available() -> bool {
    Command::new("python3")
        .args(["-c", "import filelock"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn filelock_version() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import filelock, sys; print(filelock.__version__, sys.version.split()[0])",
        ])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        child(&args[at + 1..]);
        return;
    }
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var_os("LOCKATTR_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let rounds: usize = match args.iter().position(|arg| arg == "--rounds") {
        Some(at) => args[at + 1].parse().expect("--rounds N"),
        None if quick => 30,
        None => 300,
    };
    let settle = match args.iter().position(|arg| arg == "--settle") {
        Some(at) => Duration::from_millis(args[at + 1].parse().expect("--settle MS")),
        None => Duration::from_millis(20),
    };
    let exe = std::env::current_exe().expect("this binary");
    let dir = bench_dir();
    let has_flock = Command::new("flock")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let has_filelock = filelock_available();

    let mut waiter = Command::new(&exe);
    waiter
        .args(["--child", "waiter"])
        .env("LOCKATTR_DIR", &dir)
        .env_remove("LOCKATTR_URL");
    let candidate = |label, kind, file: &str| {
        let path = dir.join(file);
        Candidate {
            label,
            kind,
            samples: Vec::with_capacity(rounds),
            holder: Holder::new(&path),
            path,
        }
    };
    let mut candidates = vec![
        candidate(
            "floor: blocking flock(2), no library",
            Kind::InWaiter("raw"),
            "handoff-raw.lock",
        ),
        candidate(
            "lockattr `wait`",
            Kind::InWaiter("wait"),
            "handoff-wait.lock",
        ),
        candidate(
            "lockattr `wait = \"30s\"`",
            Kind::InWaiter("wait-dur"),
            "handoff-wait-dur.lock",
        ),
        candidate(
            "lockattr `wait`, async fn",
            Kind::InWaiter("async-wait"),
            "handoff-async-wait.lock",
        ),
        candidate(
            "lockattr `wait = \"30s\"`, async fn",
            Kind::InWaiter("async-wait-dur"),
            "handoff-async-wait-dur.lock",
        ),
    ];
    let flock_fd = has_flock.then(|| {
        candidates.push(candidate(
            "`flock -w 10 9` in bash, then a builtin",
            Kind::FlockFd,
            "flock-fd.lock",
        ));
        candidates.push(candidate(
            "`flock -w 10 FILE CMD`, CMD starts",
            Kind::FlockCmd,
            "flock-cmd.lock",
        ));
        candidates.push(candidate(
            "start-up of CMD alone (no lock)",
            Kind::StartUp,
            "start-up.lock",
        ));
        let mut cmd = Command::new("bash");
        cmd.args(["-c", FLOCK_FD_WAITER, "bash"])
            .arg(dir.join("flock-fd.lock"));
        Waiter::start(cmd)
    });
    let filelock = has_filelock.then(|| {
        let path = dir.join("filelock.lock");
        candidates.push(candidate(
            "Python filelock",
            Kind::FileLock,
            "filelock.lock",
        ));
        let mut cmd = Command::new("python3");
        cmd.args(["-c", FILELOCK_WAITER]).arg(path);
        Waiter::start(cmd)
    });
    let seed = now_ns() as u64 | 1;
    let mut run = Run {
        exe,
        dir: dir.clone(),
        lockattr: Waiter::start(waiter),
        flock_fd,
        filelock,
        jitter: Jitter(seed),
        settle,
    };
    let load_before = loadavg();
    let start = Instant::now();
    for round in 0..rounds {
        let n = candidates.len();
        for i in 0..n {
            let at = (round + i) % n;
            run.round(&mut candidates[at]);
        }
    }
    let took = start.elapsed();
    report(
        &run,
        settle,
        &candidates,
        rounds,
        took,
        &load_before,
        has_flock,
        has_filelock,
    );
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_dir() -> PathBuf {
    let base = match std::env::var_os("LOCKATTR_BENCH_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base),
        _ if Path::new("/run/lock").is_dir() => PathBuf::from("/run/lock"),
        _ => std::env::temp_dir(),
    };
    let dir = base.join(format!("lockattr-bench-handoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the benchmark directory");
    dir
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The nearest-rank percentile `p` (0-100) of sorted `xs`.
fn percentile(xs: &[i128], p: usize) -> i128 {
    let rank = (xs.len() * p).div_ceil(100).max(1);
    xs[rank - 1]
}

fn show(ns: i128) -> String {
    let us = ns as f64 / 1000.0;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    run: &Run,
    settle: Duration,
    candidates: &[Candidate],
    rounds: usize,
    took: Duration,
    load_before: &str,
    has_flock: bool,
    has_filelock: bool,
) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Hand-off latency: the holder's flock(LOCK_UN) -> the waiter running, in another process"
    );
    println!(
        "{rounds} rounds per waiter, interleaved; released {settle:?} after the waiter \
         blocked in flock(2) (filelock: 100-150 ms after it began); {took:.1?} in all; \
         lock files in {}",
        run.dir.display()
    );
    println!(
        "machine: {cores} cores, {cpu}, Linux {}; load average {load_before} before, {} after",
        kernel.trim(),
        loadavg()
    );
    if has_filelock {
        println!("python filelock {}", filelock_version());
    }
    println!();
    let mut rows: Vec<(String, Vec<i128>, &str)> = Vec::new();
    for c in candidates {
        let goal = match c.kind {
            Kind::InWaiter("wait") => "< 200 µs",
            Kind::InWaiter("wait-dur") => "< 1 ms",
            _ => "",
        };
        rows.push((c.label.to_owned(), c.samples.clone(), goal));
    }
    let base = {
        let wait = candidates.iter().find(|c| c.kind == Kind::InWaiter("wait"));
        let mut xs = wait.expect("the `wait` row").samples.clone();
        xs.sort_unstable();
        percentile(&xs, 50)
    };
    println!(
        "| waiter | median | p90 | p99 | max | median / lockattr `wait` | goal (median) | result |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for (label, mut xs, goal) in rows {
        xs.sort_unstable();
        let median = percentile(&xs, 50);
        let result = match goal {
            "< 200 µs" => Some(median < 200_000),
            "< 1 ms" => Some(median < 1_000_000),
            _ => None,
        };
        println!(
            "| {label} | {} | {} | {} | {} | {:.2}x | {goal} | {} |",
            show(median),
            show(percentile(&xs, 90)),
            show(percentile(&xs, 99)),
            show(*xs.last().expect("samples")),
            median as f64 / base as f64,
            match result {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            }
        );
    }
    if !has_flock {
        println!("\nflock(1) skipped: not installed (util-linux)");
    }
    if !has_filelock {
        println!(
            "\nPython filelock skipped: `python3 -c 'import filelock'` failed; bench/handoff.sh installs it"
        );
    }
}
