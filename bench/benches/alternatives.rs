//! Why flock (the README's section of that name): the other ways to keep two
//! copies of a command from running at once that the Python recipe this
//! project started from weighed (binding a TCP port on loopback, binding a
//! unix socket), with an abstract unix socket and a pid file beside them,
//! against flock(2). Two measurements, each a ratio to flock's in the same
//! run:
//!
//! - **Take + release**: one uncontended take and release, as a program
//!   would do it for each run of a command: best of K rounds of N
//!   iterations, the candidates interleaved and rotated in every round.
//! - **After SIGKILL**: a holder process (this binary re-run with
//!   `--child hold MECHANISM`) takes the lock and says so; this process
//!   reads the clock, sends SIGKILL, and takes the lock as soon as it can:
//!   retrying without a pause (yielding the CPU between tries), or, for
//!   lockattr's `wait`, blocked in the kernel since before the kill. The
//!   killed holder is reaped at once by a thread of this process, as its
//!   shell would. A mechanism whose holder leaves state behind gets a limit
//!   (`STALE_LIMIT`) and fewer rounds: it never comes free by itself.
//!
//! ```sh
//! cargo bench -p lockattr-bench --bench alternatives             # about 10 s
//! cargo bench -p lockattr-bench --bench alternatives -- --quick  # about 3 s
//! ```
//!
//! Files live in a fresh directory under `/run/lock` (`/tmp` if it is
//! missing), or under `$LOCKATTR_BENCH_DIR`, removed at the end.

use lockattr::{Lock, exclusive};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a killed holder's lock is waited for before it is called stale.
const STALE_LIMIT: Duration = Duration::from_millis(500);

#[exclusive("alternatives")]
#[inline(never)]
fn exclusive_call() -> Result<(), lockattr::Error> {
    black_box(());
    Ok(())
}

/// Where each mechanism keeps its lock.
#[derive(Clone)]
struct Places {
    lock_file: PathBuf,
    socket_file: PathBuf,
    pid_file: PathBuf,
    /// The abstract socket's name (Linux), without the leading NUL.
    abstract_name: String,
    port: u16,
}

impl Places {
    fn new(dir: &Path, port: u16) -> Places {
        Places {
            lock_file: dir.join("alternatives.lock"),
            socket_file: dir.join("alternatives.sock"),
            pid_file: dir.join("alternatives.pid"),
            abstract_name: format!("lockattr-bench-alternatives-{}", std::process::id()),
            port,
        }
    }

    fn to_args(&self) -> Vec<String> {
        vec![
            self.lock_file.display().to_string(),
            self.socket_file.display().to_string(),
            self.pid_file.display().to_string(),
            self.abstract_name.clone(),
            self.port.to_string(),
        ]
    }

    fn from_args(args: &[String]) -> Places {
        Places {
            lock_file: PathBuf::from(&args[0]),
            socket_file: PathBuf::from(&args[1]),
            pid_file: PathBuf::from(&args[2]),
            abstract_name: args[3].clone(),
            port: args[4].parse().expect("a port"),
        }
    }
}

// ---------------------------------------------------------------------------
// The mechanisms: take (or `None` when another holder has it), and release.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mechanism {
    /// open(O_RDONLY) + flock(LOCK_EX|LOCK_NB); release: close.
    Flock,
    /// socket(AF_INET) + bind(127.0.0.1:PORT), as the recipe's
    /// `socket.socket().bind(("127.0.0.1", 12340))`; release: close.
    TcpPort,
    /// socket(AF_UNIX) + bind to a name in the abstract namespace (Linux);
    /// release: close.
    AbstractSocket,
    /// socket(AF_UNIX) + bind to a path, as the recipe's second try;
    /// release: close + unlink.
    SocketFile,
    /// open(O_CREAT|O_EXCL) + write the pid; release: unlink.
    PidFile,
    /// A pid file whose taker, finding it, reads the pid and removes the
    /// file if `kill(pid, 0)` says no such process: the usual stale check.
    PidFileChecked,
}

impl Mechanism {
    const ALL: [Mechanism; 6] = [
        Mechanism::Flock,
        Mechanism::TcpPort,
        Mechanism::AbstractSocket,
        Mechanism::SocketFile,
        Mechanism::PidFile,
        Mechanism::PidFileChecked,
    ];

    fn label(self) -> &'static str {
        match self {
            Mechanism::Flock => "flock(2): open + flock(LOCK_EX|LOCK_NB) + close",
            Mechanism::TcpPort => "TCP port: socket + bind(127.0.0.1:PORT) + close",
            Mechanism::AbstractSocket => "abstract unix socket: socket + bind + close",
            Mechanism::SocketFile => "unix socket file: socket + bind(path) + close + unlink",
            Mechanism::PidFile => "pid file: open(O_CREAT|O_EXCL) + write + close + unlink",
            Mechanism::PidFileChecked => "pid file, stale if kill(pid, 0) fails",
        }
    }

    /// What the after-SIGKILL table calls it.
    fn short(self) -> &'static str {
        match self {
            Mechanism::Flock => "flock(2)",
            Mechanism::TcpPort => "TCP port on 127.0.0.1",
            Mechanism::AbstractSocket => "abstract unix socket",
            Mechanism::SocketFile => "unix socket file",
            Mechanism::PidFile => "pid file (O_EXCL)",
            Mechanism::PidFileChecked => "pid file, stale if kill(pid, 0) fails",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mechanism::Flock => "flock",
            Mechanism::TcpPort => "tcp",
            Mechanism::AbstractSocket => "abstract",
            Mechanism::SocketFile => "socket-file",
            Mechanism::PidFile => "pid-file",
            Mechanism::PidFileChecked => "pid-file-checked",
        }
    }

    fn from_name(name: &str) -> Mechanism {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("unknown mechanism {name}"))
    }

    /// Leaves state behind when its holder is killed.
    fn stale(self) -> bool {
        matches!(self, Mechanism::SocketFile | Mechanism::PidFile)
    }

    fn take(self, places: &Places) -> Option<Held> {
        match self {
            Mechanism::Flock => {
                let flags = OFlags::RDONLY | OFlags::CLOEXEC;
                let fd = rustix::fs::open(&places.lock_file, flags, Mode::empty()).expect("open");
                match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => Some(Held::Fd { _fd: fd }),
                    Err(rustix::io::Errno::WOULDBLOCK) => None,
                    Err(err) => panic!("flock: {err}"),
                }
            }
            Mechanism::TcpPort => {
                let fd = socket(AddressFamily::INET);
                let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, places.port);
                bound(rustix::net::bind(&fd, &addr)).then_some(Held::Fd { _fd: fd })
            }
            Mechanism::AbstractSocket => {
                let fd = socket(AddressFamily::UNIX);
                let addr = SocketAddrUnix::new_abstract_name(places.abstract_name.as_bytes())
                    .expect("an abstract name");
                bound(rustix::net::bind(&fd, &addr)).then_some(Held::Fd { _fd: fd })
            }
            Mechanism::SocketFile => {
                let fd = socket(AddressFamily::UNIX);
                let addr = SocketAddrUnix::new(&*places.socket_file).expect("a socket path");
                let taken = bound(rustix::net::bind(&fd, &addr));
                taken.then(|| Held::Named {
                    _fd: fd,
                    path: places.socket_file.clone(),
                })
            }
            Mechanism::PidFile => create_pid_file(&places.pid_file),
            Mechanism::PidFileChecked => create_pid_file(&places.pid_file).or_else(|| {
                let pid = std::fs::read_to_string(&places.pid_file).ok()?;
                let pid = rustix::process::Pid::from_raw(pid.trim().parse().ok()?)?;
                match rustix::process::test_kill_process(pid) {
                    // The holder is gone: the file is stale. (Racy: another
                    // taker may remove the file this one makes next.)
                    Err(rustix::io::Errno::SRCH) => {
                        let _ = std::fs::remove_file(&places.pid_file);
                        create_pid_file(&places.pid_file)
                    }
                    _ => None,
                }
            }),
        }
    }

    /// Removes what a killed holder left, before the next round.
    fn clean(self, places: &Places) {
        match self {
            Mechanism::SocketFile => {
                let _ = std::fs::remove_file(&places.socket_file);
            }
            Mechanism::PidFile | Mechanism::PidFileChecked => {
                let _ = std::fs::remove_file(&places.pid_file);
            }
            _ => {}
        }
    }
}

/// A lock taken; dropping it releases it.
enum Held {
    /// Released by closing the descriptor.
    Fd { _fd: OwnedFd },
    /// Released by removing the file and closing the descriptor.
    Named { _fd: OwnedFd, path: PathBuf },
    /// Released by removing the file.
    PidFile { path: PathBuf },
}

impl Drop for Held {
    fn drop(&mut self) {
        match self {
            Held::Fd { .. } => {}
            Held::Named { path, .. } | Held::PidFile { path } => {
                std::fs::remove_file(&*path).expect("remove the lock's file")
            }
        }
    }
}

fn socket(family: AddressFamily) -> OwnedFd {
    rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .expect("socket")
}

fn bound(result: rustix::io::Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(rustix::io::Errno::ADDRINUSE) => false,
        Err(err) => panic!("bind: {err}"),
    }
}

fn create_pid_file(path: &Path) -> Option<Held> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) => {
            let pid = format!("{}\n", std::process::id());
            rustix::io::write(&fd, pid.as_bytes()).expect("write the pid");
            Some(Held::PidFile {
                path: path.to_owned(),
            })
        }
        Err(rustix::io::Errno::EXIST) => None,
        Err(err) => panic!("create {}: {err}", path.display()),
    }
}

// ---------------------------------------------------------------------------

struct Config {
    quick: bool,
    rounds: usize,
    iters: u64,
    kills: usize,
    stale_kills: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        child(&args[at + 1..]);
        return;
    }
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var_os("LOCKATTR_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let config = if quick {
        Config {
            quick,
            rounds: 2,
            iters: 2_000,
            kills: 5,
            stale_kills: 1,
        }
    } else {
        Config {
            quick,
            rounds: 5,
            iters: 20_000,
            kills: 30,
            stale_kills: 3,
        }
    };
    let dir = bench_dir();
    lockattr::set_default_dir(&dir).expect("pin the lock directory");
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let places = Places::new(&dir, port);
    std::fs::File::create(&places.lock_file).expect("create the lock file");
    exclusive_call().expect("lock once, so that the file exists");

    println!(
        "lockattr alternatives{}: files in {}, port {port}",
        if config.quick { ", QUICK run" } else { "" },
        dir.display()
    );
    take_release(&config, &places);
    after_kill(&config, &places);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_dir() -> PathBuf {
    let base = match std::env::var_os("LOCKATTR_BENCH_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base),
        _ if Path::new("/run/lock").is_dir() => PathBuf::from("/run/lock"),
        _ => std::env::temp_dir(),
    };
    let dir = base.join(format!(
        "lockattr-bench-alternatives-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create the benchmark directory");
    dir
}

// ---------------------------------------------------------------------------
// Take + release.

/// A take + release candidate: its label, and one take and release.
type Candidate = (&'static str, Box<dyn FnMut()>);

fn take_release(config: &Config, places: &Places) {
    let mut candidates: Vec<Candidate> = Vec::new();
    for mechanism in Mechanism::ALL {
        if mechanism == Mechanism::PidFileChecked {
            continue; // uncontended, the same system calls as PidFile
        }
        let places = places.clone();
        candidates.push((
            mechanism.label(),
            Box::new(move || drop(mechanism.take(&places).expect("uncontended"))),
        ));
    }
    candidates.push((
        "lockattr: #[exclusive] fn, repeated call",
        Box::new(|| exclusive_call().expect("uncontended")),
    ));
    let mut best = vec![f64::INFINITY; candidates.len()];
    for round in 0..config.rounds {
        for k in 0..candidates.len() {
            let at = (round + k) % candidates.len();
            let run = &mut candidates[at].1;
            let start = Instant::now();
            for _ in 0..config.iters {
                run();
            }
            let ns = start.elapsed().as_nanos() as f64 / config.iters as f64;
            best[at] = best[at].min(ns);
        }
    }
    println!();
    println!(
        "Take + release, uncontended: best of {} rounds x {} iterations",
        config.rounds, config.iters
    );
    println!();
    println!(
        "| {:<58} | {:>9} | {:>11} |",
        "mechanism", "per op", "/ flock(2)"
    );
    println!(
        "|{}|{}:|{}:|",
        "-".repeat(60),
        "-".repeat(10),
        "-".repeat(12)
    );
    for ((label, _), ns) in candidates.iter().zip(&best) {
        println!(
            "| {:<58} | {:>9} | {:>11} |",
            label,
            human(*ns),
            format!("{:.2}x", ns / best[0])
        );
    }
}

// ---------------------------------------------------------------------------
// After SIGKILL.

/// How another process gets the lock once the holder is killed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Taker {
    /// Retries the mechanism's take without pausing.
    Retry(Mechanism),
    /// `Lock::at_file(..).wait().acquire()`, waiting since before the kill.
    LockattrWait,
}

impl Taker {
    fn label(self) -> String {
        match self {
            Taker::Retry(mechanism) => format!("{}, retried without a pause", mechanism.short()),
            Taker::LockattrWait => {
                "flock(2), lockattr `wait` blocked since before the kill".to_owned()
            }
        }
    }

    fn holds(self) -> Mechanism {
        match self {
            Taker::Retry(mechanism) => mechanism,
            Taker::LockattrWait => Mechanism::Flock,
        }
    }
}

fn after_kill(config: &Config, places: &Places) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut takers: Vec<Taker> = Mechanism::ALL.into_iter().map(Taker::Retry).collect();
    takers.insert(1, Taker::LockattrWait);
    let mut samples: Vec<Vec<Option<Duration>>> = vec![Vec::new(); takers.len()];
    for round in 0..config.kills {
        for (at, &taker) in takers.iter().enumerate() {
            let rounds = match taker.holds().stale() {
                true => config.stale_kills,
                false => config.kills,
            };
            if round < rounds {
                samples[at].push(kill_round(&exe, places, taker));
            }
        }
    }
    let baseline = median(&samples[0]).expect("flock comes free");
    println!();
    println!(
        "After SIGKILL: from kill(2) to another process holding the lock; median and worst \
         of {} rounds ({} for a mechanism that leaves state behind), limit {:?}",
        config.kills, config.stale_kills, STALE_LIMIT
    );
    println!();
    println!(
        "| {:<58} | {:>9} | {:>9} | {:>11} |",
        "mechanism", "median", "worst", "/ flock(2)"
    );
    println!(
        "|{}|{}:|{}:|{}:|",
        "-".repeat(60),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(12)
    );
    for (taker, samples) in takers.iter().zip(&samples) {
        let (median, worst, ratio) = match median(samples) {
            Some(median) => {
                let worst = samples.iter().flatten().max().expect("a sample");
                (
                    human(median.as_nanos() as f64),
                    human(worst.as_nanos() as f64),
                    format!("{:.2}x", median.as_secs_f64() / baseline.as_secs_f64()),
                )
            }
            None => (
                "never".to_owned(),
                format!("> {} ms", STALE_LIMIT.as_millis()),
                "-".to_owned(),
            ),
        };
        println!(
            "| {:<58} | {:>9} | {:>9} | {:>11} |",
            taker.label(),
            median,
            worst,
            ratio
        );
    }
}

/// Starts a holder, kills it, and times how long until this process holds
/// the lock; `None` when it did not within `STALE_LIMIT`.
fn kill_round(exe: &Path, places: &Places, taker: Taker) -> Option<Duration> {
    let mechanism = taker.holds();
    mechanism.clean(places);
    let mut holder = Command::new(exe)
        .args(["--child", "hold", mechanism.name()])
        .args(places.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    let stdout = holder.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the holder");
    assert_eq!(line.trim(), "held", "the holder did not take the lock");
    assert!(mechanism.take(places).is_none(), "held by the holder");

    let waiter = (taker == Taker::LockattrWait).then(|| {
        let path = places.lock_file.clone();
        let (ready, blocked) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let lock = Lock::at_file(&path).expect("absolute").wait();
            ready.send(()).expect("main waits");
            let _guard = lock.acquire().expect("the lock comes free");
            Instant::now()
        });
        blocked.recv().expect("the waiter starts");
        // A bound, not a signal: the waiter is in flock(2) well within it.
        std::thread::sleep(Duration::from_millis(20));
        thread
    });

    let killed = Instant::now();
    holder.kill().expect("SIGKILL the holder");
    let reaper = std::thread::spawn(move || holder.wait());
    let taken = match waiter {
        Some(thread) => Some(thread.join().expect("the waiter") - killed),
        None => loop {
            if let Some(held) = mechanism.take(places) {
                let at = killed.elapsed();
                drop(held);
                break Some(at);
            }
            if killed.elapsed() > STALE_LIMIT {
                break None;
            }
            std::thread::yield_now();
        },
    };
    reaper.join().expect("reaper").expect("reap the holder");
    mechanism.clean(places);
    taken
}

fn median(samples: &[Option<Duration>]) -> Option<Duration> {
    let mut taken: Vec<Duration> = samples.iter().copied().collect::<Option<_>>()?;
    taken.sort();
    taken.get(taken.len() / 2).copied()
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

// ---------------------------------------------------------------------------

/// `--child hold MECHANISM PLACES...`: takes the lock, says `held`, and
/// keeps it until killed (or until its stdin closes).
fn child(args: &[String]) {
    assert_eq!(args[0], "hold");
    let mechanism = Mechanism::from_name(&args[1]);
    let places = Places::from_args(&args[2..]);
    let held = mechanism.take(&places).expect("the lock is free");
    println!("held");
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read(&mut [0]);
    // Stdin closed without a kill: let the parent's clean-up do the rest.
    std::mem::forget(held);
}
