//! Speed of `#[exclusive]` against the raw system calls and the peers
//! (issue 4): `cargo bench -p lockattr-bench --bench speed`, or with
//! `-- --quick` (or `LOCKATTR_BENCH_QUICK=1`) for a fast smoke run.
//!
//! Machines are noisy, so every row is a ratio to a baseline measured in the
//! same run. In-process rows: best of K rounds of N iterations, the candidates
//! interleaved in every round (rotating the order) so that drift hits all of
//! them alike. First calls: one fresh process per sample, the median of the
//! samples, raw and lockattr alternating. Contended: 8 processes re-running
//! this binary, raw and lockattr alternating, best round.
//!
//! Lock files live in a fresh directory under `/run/lock` (lockattr's
//! default directory; `/tmp` if it is missing), or under
//! `$LOCKATTR_BENCH_DIR`; `LOCKATTR_DIR` is set to it for the run.

use lockattr::{Lock, LockName};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counts every allocation of the process, to report allocations per call.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// The annotated functions under test.

#[lockattr::exclusive("uncontended")]
#[inline(never)]
fn exclusive_call() -> Result<(), lockattr::Error> {
    black_box(());
    Ok(())
}

/// A name made from an argument at each call (issue 9).
#[lockattr::exclusive("templated-{env}")]
#[inline(never)]
fn templated_call(env: &str) -> Result<(), lockattr::Error> {
    black_box(env);
    Ok(())
}

const ACQUIRE: Lock = Lock::new(LockName::new("acquire"));

#[lockattr::exclusive("nested")]
fn nested_outer(calls: u64) -> Result<(), lockattr::Error> {
    for _ in 0..calls {
        nested_inner()?;
    }
    Ok(())
}

#[lockattr::exclusive("nested")]
#[inline(never)]
fn nested_inner() -> Result<(), lockattr::Error> {
    black_box(());
    Ok(())
}

#[lockattr::exclusive("first")]
#[inline(never)]
fn first_call() -> Result<(), lockattr::Error> {
    black_box(());
    Ok(())
}

#[lockattr::exclusive("contended", wait)]
#[inline(never)]
fn contended_turn() -> Result<(), lockattr::Error> {
    black_box(());
    Ok(())
}

// ---------------------------------------------------------------------------
// The raw sequences.

const RDONLY: OFlags = OFlags::RDONLY.union(OFlags::CLOEXEC);

/// open(O_RDONLY|O_CLOEXEC) + flock(LOCK_EX|LOCK_NB) + close.
#[inline(never)]
fn raw_open_lock_close(path: &Path) {
    let fd = rustix::fs::open(path, RDONLY, Mode::empty()).expect("open");
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).expect("flock");
    drop(fd);
}

/// The system calls of lockattr's first lock of a file, without the
/// library: open (no symlink, no FIFO hang, no controlling terminal), check
/// it is a regular file, lock, check the path still names it, unlock and
/// keep the descriptor.
#[inline(never)]
fn checked_first_lock(path: &Path) -> OwnedFd {
    let flags = RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::empty()).expect("open");
    let st = rustix::fs::fstat(&fd).expect("fstat");
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::RegularFile);
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).expect("flock");
    let again = rustix::fs::lstat(path).expect("lstat");
    assert_eq!((st.st_dev, st.st_ino), (again.st_dev, again.st_ino));
    rustix::fs::flock(&fd, FlockOperation::Unlock).expect("unlock");
    fd
}

// ---------------------------------------------------------------------------
// Settings.

struct Config {
    quick: bool,
    rounds: usize,
    iters: u64,
    /// Iterations per round of the fresh-name rows (each needs its own file).
    fresh_iters: u64,
    /// Fresh processes per first-call candidate.
    samples: usize,
    procs: usize,
    contended_rounds: usize,
    contended_time: Duration,
}

impl Config {
    fn new(quick: bool) -> Config {
        if quick {
            Config {
                quick,
                rounds: 2,
                iters: 2_000,
                fresh_iters: 200,
                samples: 20,
                procs: 8,
                contended_rounds: 1,
                contended_time: Duration::from_millis(300),
            }
        } else {
            Config {
                quick,
                rounds: 5,
                iters: 20_000,
                fresh_iters: 2_000,
                samples: 300,
                procs: 8,
                contended_rounds: 2,
                contended_time: Duration::from_secs(2),
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        child(&args[at + 1..]);
        return;
    }
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var_os("LOCKATTR_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let config = Config::new(quick);
    let dir = bench_dir();
    // SAFETY: nothing else runs yet: no thread is started before this point,
    // and lockattr reads LOCKATTR_DIR on its first lock, after this.
    unsafe {
        std::env::set_var("LOCKATTR_DIR", &dir);
        std::env::remove_var("LOCKATTR_URL");
    }
    let mut table = Vec::new();
    let allocs = in_process(&config, &dir, &mut table);
    first_calls(&config, &dir, &mut table);
    contended(&config, &mut table);
    table.push(Row::Section("Heap allocations (counting global allocator)"));
    table.push(Row::Allocs {
        text: "per uncontended #[exclusive] call after the first",
        per_call: allocs,
    });
    print_table(&config, &dir, &table);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_dir() -> PathBuf {
    let base = match std::env::var_os("LOCKATTR_BENCH_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base),
        _ if Path::new("/run/lock").is_dir() => PathBuf::from("/run/lock"),
        _ => std::env::temp_dir(),
    };
    let dir = base.join(format!("lockattr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the benchmark directory");
    dir
}

fn lock_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.lock"));
    File::create(&path).expect("create a lock file");
    path
}

// ---------------------------------------------------------------------------
// In-process rows.

/// One in-process candidate: `run(n)` does `n` operations.
struct Case {
    label: &'static str,
    run: Box<dyn FnMut(u64)>,
    iters: u64,
    best: f64,
    allocs: u64,
    ops: u64,
}

impl Case {
    fn new(label: &'static str, iters: u64, run: impl FnMut(u64) + 'static) -> Case {
        Case {
            label,
            run: Box::new(run),
            iters,
            best: f64::INFINITY,
            allocs: 0,
            ops: 0,
        }
    }
}

/// Runs the in-process rows; returns the allocations per `#[exclusive]` call.
fn in_process(config: &Config, dir: &Path, table: &mut Vec<Row>) -> f64 {
    let n = config.iters;
    let mut cases = Vec::new();

    let raw = lock_file(dir, "raw");
    cases.push(Case::new("raw", n, move |n| {
        for _ in 0..n {
            raw_open_lock_close(&raw);
        }
    }));
    cases.push(Case::new("exclusive", n, |n| {
        for _ in 0..n {
            exclusive_call().expect("uncontended #[exclusive] call");
        }
    }));
    cases.push(Case::new("templated", n, |n| {
        for _ in 0..n {
            templated_call(black_box("production")).expect("uncontended templated call");
        }
    }));
    cases.push(Case::new("acquire", n, |n| {
        for _ in 0..n {
            drop(ACQUIRE.acquire().expect("Lock::acquire"));
        }
    }));
    let std_path = lock_file(dir, "std");
    cases.push(Case::new("std", n, move |n| {
        for _ in 0..n {
            let file = File::open(&std_path).expect("open");
            file.try_lock().expect("File::try_lock");
            drop(file);
        }
    }));
    let fd_lock_path = lock_file(dir, "fd-lock");
    cases.push(Case::new("fd-lock", n, move |n| {
        for _ in 0..n {
            let mut lock = fd_lock::RwLock::new(File::open(&fd_lock_path).expect("open"));
            drop(lock.try_write().expect("fd_lock try_write"));
        }
    }));
    let proc_lock_path = lock_file(dir, "proc-lock");
    cases.push(Case::new("proc-lock", n, move |n| {
        let at = proc_lock::LockPath::FullPath(&proc_lock_path);
        for _ in 0..n {
            drop(proc_lock::try_lock(&at).expect("proc_lock::try_lock"));
        }
    }));
    let named_lock_path = lock_file(dir, "named-lock");
    cases.push(Case::new("named-lock", n, move |n| {
        for _ in 0..n {
            let lock = named_lock::NamedLock::with_path(&named_lock_path).expect("NamedLock");
            drop(lock.try_lock().expect("NamedLock::try_lock"));
        }
    }));
    let fslock_path = lock_file(dir, "fslock");
    cases.push(Case::new("fslock", n, move |n| {
        for _ in 0..n {
            let mut lock = fslock::LockFile::open(&fslock_path).expect("fslock open");
            assert!(lock.try_lock().expect("fslock try_lock"));
            drop(lock);
        }
    }));

    let floor_path = lock_file(dir, "floor");
    let floor_fd = rustix::fs::open(&floor_path, RDONLY, Mode::empty()).expect("open");
    cases.push(Case::new("floor", n, move |n| {
        let fd = floor_fd.as_fd();
        for _ in 0..n {
            rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).expect("flock");
            black_box(rustix::fs::stat(&floor_path).expect("stat"));
            rustix::fs::flock(fd, FlockOperation::Unlock).expect("unlock");
        }
    }));
    let kept_path = lock_file(dir, "kept");
    let kept_fd = rustix::fs::open(&kept_path, RDONLY, Mode::empty()).expect("open");
    cases.push(Case::new("kept", n, move |n| {
        let fd = kept_fd.as_fd();
        for _ in 0..n {
            rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).expect("flock");
            rustix::fs::flock(fd, FlockOperation::Unlock).expect("unlock");
        }
    }));
    // What cheaper re-checks would cost (information for the optimiser):
    // fstat's st_nlink sees a deleted file and one renamed over (unless it
    // has another hard link); a stat relative to a kept directory descriptor
    // walks one path component instead of all of them.
    let fstat_path = lock_file(dir, "fstat");
    let fstat_fd = rustix::fs::open(&fstat_path, RDONLY, Mode::empty()).expect("open");
    cases.push(Case::new("fstat", n, move |n| {
        let fd = fstat_fd.as_fd();
        for _ in 0..n {
            rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).expect("flock");
            black_box(rustix::fs::fstat(fd).expect("fstat"));
            rustix::fs::flock(fd, FlockOperation::Unlock).expect("unlock");
        }
    }));
    let statat_path = lock_file(dir, "statat");
    let statat_fd = rustix::fs::open(&statat_path, RDONLY, Mode::empty()).expect("open");
    let dir_fd = rustix::fs::open(dir, RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open");
    cases.push(Case::new("statat", n, move |n| {
        let fd = statat_fd.as_fd();
        for _ in 0..n {
            rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).expect("flock");
            let st = rustix::fs::statat(&dir_fd, "statat.lock", AtFlags::SYMLINK_NOFOLLOW);
            black_box(st.expect("statat"));
            rustix::fs::flock(fd, FlockOperation::Unlock).expect("unlock");
        }
    }));
    // Nested calls: one outer hold per round, `n` re-entrant calls inside it.
    cases.push(Case::new("nested", n, |n| {
        nested_outer(n).expect("nested #[exclusive] calls");
    }));

    // First use of a name in a warm process: every iteration locks a file it
    // never locked before (made beforehand, as a lock file left by earlier
    // runs), so lockattr makes a new registry slot and opens the file.
    let fresh = config.fresh_iters;
    let sets = config.rounds + 1; // the warm-up pass takes one set too
    let mut raw_sets = Vec::new();
    let mut lock_sets = Vec::new();
    for set in 0..sets {
        let raws: Vec<PathBuf> = (0..fresh)
            .map(|i| lock_file(dir, &format!("fresh-raw-{set}-{i}")))
            .collect();
        let locks: Vec<Lock> = (0..fresh)
            .map(|i| {
                let path = lock_file(dir, &format!("fresh-lockattr-{set}-{i}"));
                let path: &'static str = path.to_str().expect("UTF-8 path").to_owned().leak();
                Lock::at_path(path)
            })
            .collect();
        raw_sets.push(raws);
        lock_sets.push(locks);
    }
    let mut raw_sets = raw_sets.into_iter();
    cases.push(Case::new("fresh-raw", fresh, move |n| {
        let set = raw_sets.next().expect("a fresh set per round");
        for path in &set[..n as usize] {
            raw_open_lock_close(path);
        }
    }));
    let mut lock_sets = lock_sets.into_iter();
    cases.push(Case::new("fresh-lockattr", fresh, move |n| {
        let set = lock_sets.next().expect("a fresh set per round");
        for lock in &set[..n as usize] {
            drop(lock.acquire().expect("first Lock::acquire of a path"));
        }
    }));

    // Warm-up: first calls, page faults, the registry's first slot.
    for case in &mut cases {
        let iters = case.iters;
        (case.run)(iters);
    }
    eprintln!(
        "speed: {} rounds of {} iterations ({} for fresh names), {} candidates interleaved",
        config.rounds,
        n,
        fresh,
        cases.len()
    );
    for round in 0..config.rounds {
        let count = cases.len();
        for k in 0..count {
            let case = &mut cases[(round + k) % count];
            let iters = case.iters;
            let allocs = allocations();
            let start = Instant::now();
            (case.run)(iters);
            let elapsed = start.elapsed();
            case.allocs += allocations() - allocs;
            case.ops += iters;
            case.best = case.best.min(elapsed.as_nanos() as f64 / iters as f64);
        }
    }

    let get = |label: &str| {
        let case = cases.iter().find(|c| c.label == label).expect("a case");
        (case.best, case.allocs as f64 / case.ops as f64)
    };
    let (raw, raw_allocs) = get("raw");
    let (floor, floor_allocs) = get("floor");
    let (exclusive, exclusive_allocs) = get("exclusive");
    let row = |text: &'static str, label: &str, goal: Goal| {
        let (ns, allocs) = get(label);
        Row::time(text, ns, raw, "raw", Some(allocs), goal)
    };
    table.push(Row::Section(
        "Uncontended, repeated calls (lock file exists)",
    ));
    table.push(Row::time(
        "raw rustix open(RDONLY,CLOEXEC) + flock(EX,NB) + close",
        raw,
        raw,
        "raw",
        Some(raw_allocs),
        Goal::Baseline,
    ));
    table.push(row(
        "#[exclusive] fn, repeated call",
        "exclusive",
        Goal::AtMost(0.6),
    ));
    table.push(row(
        "Lock::acquire + drop, repeated",
        "acquire",
        Goal::AtMost(0.6),
    ));
    let (templated, templated_allocs) = get("templated");
    table.push(Row::time(
        "#[exclusive(\"templated-{env}\")] fn, repeated call",
        templated,
        exclusive,
        "fixed name",
        Some(templated_allocs),
        Goal::None,
    ));
    table.push(row("std File::open + File::try_lock", "std", Goal::None));
    table.push(row(
        "fd-lock 4: File::open + RwLock::try_write",
        "fd-lock",
        Goal::None,
    ));
    table.push(row(
        "proc-lock 0.4: try_lock(FullPath)",
        "proc-lock",
        Goal::None,
    ));
    table.push(row(
        "named-lock 0.4: with_path + try_lock",
        "named-lock",
        Goal::None,
    ));
    table.push(row(
        "fslock 0.2: LockFile::open + try_lock",
        "fslock",
        Goal::None,
    ));
    table.push(Row::Section("Re-acquire on a kept descriptor"));
    table.push(Row::time(
        "floor: kept fd, flock(EX,NB) + stat(path) + flock(UN)",
        floor,
        floor,
        "floor",
        Some(floor_allocs),
        Goal::Baseline,
    ));
    table.push(Row::time(
        "#[exclusive] fn, repeated call",
        exclusive,
        floor,
        "floor",
        Some(exclusive_allocs),
        Goal::AtMost(1.15),
    ));
    let (kept, kept_allocs) = get("kept");
    table.push(Row::time(
        "kept fd, flock(EX,NB) + flock(UN), no re-check",
        kept,
        floor,
        "floor",
        Some(kept_allocs),
        Goal::None,
    ));
    let (fstat, fstat_allocs) = get("fstat");
    table.push(Row::time(
        "kept fd, flock(EX,NB) + fstat(fd) + flock(UN)",
        fstat,
        floor,
        "floor",
        Some(fstat_allocs),
        Goal::None,
    ));
    let (statat, statat_allocs) = get("statat");
    table.push(Row::time(
        "kept fd + dir fd, flock(EX,NB) + fstatat(dir, name) + flock(UN)",
        statat,
        floor,
        "floor",
        Some(statat_allocs),
        Goal::None,
    ));
    table.push(Row::Section("Nested (re-entrant) call"));
    let (nested, nested_allocs) = get("nested");
    table.push(Row::time(
        "#[exclusive] fn called while holding its lock",
        nested,
        raw,
        "raw",
        Some(nested_allocs),
        Goal::None,
    ));
    table.push(Row::Section(
        "First use of a name in a warm process (fresh lock name per iteration)",
    ));
    let (fresh_raw, fresh_raw_allocs) = get("fresh-raw");
    let (fresh_lock, fresh_lock_allocs) = get("fresh-lockattr");
    table.push(Row::time(
        "raw open + flock + close, a new file each iteration",
        fresh_raw,
        fresh_raw,
        "raw new",
        Some(fresh_raw_allocs),
        Goal::Baseline,
    ));
    table.push(Row::time(
        "Lock::at_path(new path).acquire + drop",
        fresh_lock,
        fresh_raw,
        "raw new",
        Some(fresh_lock_allocs),
        Goal::AtMost(1.5),
    ));
    exclusive_allocs
}

// ---------------------------------------------------------------------------
// First call in a process: one fresh process per sample.

fn first_calls(config: &Config, dir: &Path, table: &mut Vec<Row>) {
    lock_file(dir, "first-raw");
    lock_file(dir, "first-checked");
    lock_file(dir, "first");
    let exe = std::env::current_exe().expect("current_exe");
    let mut raw = Vec::new();
    let mut checked = Vec::new();
    let mut lockattr = Vec::new();
    eprintln!(
        "speed: first calls, {} fresh processes per candidate",
        config.samples
    );
    for i in 0..3 * config.samples {
        let which = ["raw", "checked", "exclusive"][i % 3];
        let out = Command::new(&exe)
            .args(["--child", "first", which])
            .stderr(Stdio::inherit())
            .output()
            .expect("run a child");
        assert!(out.status.success(), "first-call child failed");
        let ns: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the child prints nanoseconds");
        match which {
            "raw" => &mut raw,
            "checked" => &mut checked,
            _ => &mut lockattr,
        }
        .push(ns);
    }
    let raw = median(&mut raw);
    let checked = median(&mut checked);
    let lockattr = median(&mut lockattr);
    table.push(Row::Section(
        "First call in a process (a fresh process per sample, median)",
    ));
    table.push(Row::time(
        "raw open + flock + close, first in its process",
        raw,
        raw,
        "raw 1st",
        None,
        Goal::Baseline,
    ));
    table.push(Row::time(
        "raw + lockattr's checks: open + fstat + flock + lstat + flock(UN), first",
        checked,
        raw,
        "raw 1st",
        None,
        Goal::None,
    ));
    table.push(Row::time(
        "#[exclusive] fn, first call in its process",
        lockattr,
        raw,
        "raw 1st",
        None,
        Goal::AtMost(1.5),
    ));
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

// ---------------------------------------------------------------------------
// Contended throughput: N processes taking turns on one lock.

fn contended(config: &Config, table: &mut Vec<Row>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut best_raw: f64 = 0.0;
    let mut best_lockattr: f64 = 0.0;
    let mut notices = 0;
    eprintln!(
        "speed: contended, {} processes, {} round(s) of {:?} each",
        config.procs, config.contended_rounds, config.contended_time
    );
    for round in 0..config.contended_rounds {
        let order = if round % 2 == 0 {
            ["raw", "exclusive"]
        } else {
            ["exclusive", "raw"]
        };
        for which in order {
            let (rate, printed) = contended_round(&exe, config, which);
            notices += printed;
            let best = if which == "raw" {
                &mut best_raw
            } else {
                &mut best_lockattr
            };
            *best = best.max(rate);
        }
    }
    table.push(Row::Section(
        "Contended: 8 processes taking turns on one lock (best round)",
    ));
    table.push(Row::Rate {
        text: "raw: open once, loop of blocking flock(EX) + flock(UN)",
        per_sec: best_raw,
        baseline: best_raw,
        notices: None,
    });
    table.push(Row::Rate {
        text: "#[exclusive(\"...\", wait)] fn, empty body",
        per_sec: best_lockattr,
        baseline: best_raw,
        notices: Some(notices),
    });
}

/// One round: acquisitions per second of all processes together, and how
/// many "waiting for lock" notices they printed.
fn contended_round(exe: &Path, config: &Config, which: &str) -> (f64, usize) {
    let start = SystemTime::now() + Duration::from_millis(300);
    let start_ns = start.duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    let time_ms = config.contended_time.as_millis();
    let children: Vec<_> = (0..config.procs)
        .map(|_| {
            Command::new(exe)
                .args([
                    "--child",
                    "contended",
                    which,
                    &start_ns.to_string(),
                    &time_ms.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a contending child")
        })
        .collect();
    let mut total = 0u64;
    let mut notices = 0;
    for mut child in children {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let out = child.wait_with_output().expect("wait for a child");
        assert!(out.status.success(), "contending child failed: {stderr}");
        notices += stderr.matches("waiting for lock").count();
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .expect("the child prints its count");
    }
    (total as f64 / config.contended_time.as_secs_f64(), notices)
}

// ---------------------------------------------------------------------------
// Child processes.

fn child(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["first", which, ..] => {
            let ns = match *which {
                "raw" => {
                    let dir = std::env::var_os("LOCKATTR_DIR").expect("LOCKATTR_DIR");
                    let path = Path::new(&dir).join("first-raw.lock");
                    let start = Instant::now();
                    raw_open_lock_close(&path);
                    start.elapsed()
                }
                "checked" => {
                    let dir = std::env::var_os("LOCKATTR_DIR").expect("LOCKATTR_DIR");
                    let path = Path::new(&dir).join("first-checked.lock");
                    let start = Instant::now();
                    let fd = checked_first_lock(&path);
                    let elapsed = start.elapsed();
                    drop(fd);
                    elapsed
                }
                _ => {
                    let start = Instant::now();
                    first_call().expect("first #[exclusive] call");
                    start.elapsed()
                }
            };
            println!("{}", ns.as_nanos());
        }
        ["contended", which, start_ns, time_ms, ..] => {
            let start_ns: u128 = start_ns.parse().expect("start");
            let time = Duration::from_millis(time_ms.parse().expect("duration"));
            let start = UNIX_EPOCH + Duration::from_nanos(start_ns as u64);
            let raw = match *which {
                "raw" => {
                    let dir = std::env::var_os("LOCKATTR_DIR").expect("LOCKATTR_DIR");
                    let path = Path::new(&dir).join("contended-raw.lock");
                    let create = RDONLY | OFlags::CREATE;
                    Some(rustix::fs::open(&path, create, Mode::from_raw_mode(0o644)).expect("open"))
                }
                _ => None,
            };
            if let Ok(wait) = start.duration_since(SystemTime::now()) {
                std::thread::sleep(wait);
            }
            let end = Instant::now() + time;
            let mut count = 0u64;
            match raw {
                Some(fd) => {
                    while Instant::now() < end {
                        rustix::fs::flock(&fd, FlockOperation::LockExclusive).expect("flock");
                        black_box(());
                        rustix::fs::flock(&fd, FlockOperation::Unlock).expect("unlock");
                        count += 1;
                    }
                }
                None => {
                    while Instant::now() < end {
                        contended_turn().expect("contended #[exclusive] call");
                        count += 1;
                    }
                }
            }
            println!("{count}");
        }
        // For profilers (strace -c, perf stat, valgrind --tool=callgrind):
        // `LOCKATTR_DIR=/some/dir speed --child profile exclusive|floor|nested|raw N`.
        ["profile", which, n, ..] => {
            let n: u64 = n.parse().expect("iterations");
            let dir = std::env::var_os("LOCKATTR_DIR").expect("set LOCKATTR_DIR for profile runs");
            let path = lock_file(Path::new(&dir), "profile");
            exclusive_call().expect("first call");
            match *which {
                "exclusive" => (0..n).for_each(|_| exclusive_call().expect("call")),
                "nested" => nested_outer(n).expect("nested calls"),
                "raw" => (0..n).for_each(|_| raw_open_lock_close(&path)),
                _ => {
                    let fd = rustix::fs::open(&path, RDONLY, Mode::empty()).expect("open");
                    for _ in 0..n {
                        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
                            .expect("flock");
                        black_box(rustix::fs::stat(&path).expect("stat"));
                        rustix::fs::flock(&fd, FlockOperation::Unlock).expect("unlock");
                    }
                }
            }
        }
        other => panic!("unknown child role {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The table.

#[derive(Clone, Copy)]
enum Goal {
    Baseline,
    None,
    /// At most this ratio to the row's baseline.
    AtMost(f64),
}

enum Row {
    Section(&'static str),
    Time {
        text: &'static str,
        ns: f64,
        ratio: f64,
        to: &'static str,
        allocs: Option<f64>,
        goal: Goal,
    },
    Rate {
        text: &'static str,
        per_sec: f64,
        baseline: f64,
        notices: Option<usize>,
    },
    Allocs {
        text: &'static str,
        per_call: f64,
    },
}

impl Row {
    fn time(
        text: &'static str,
        ns: f64,
        baseline: f64,
        to: &'static str,
        allocs: Option<f64>,
        goal: Goal,
    ) -> Row {
        Row::Time {
            text,
            ns,
            ratio: ns / baseline,
            to,
            allocs,
            goal,
        }
    }
}

fn print_table(config: &Config, dir: &Path, table: &[Row]) {
    println!();
    println!(
        "lockattr speed (issue 4){}: in-process rows best of {} rounds x {} iterations, \
         candidates interleaved; lock files in {}",
        if config.quick { ", QUICK run" } else { "" },
        config.rounds,
        config.iters,
        dir.display()
    );
    println!();
    println!(
        "| {:<66} | {:>11} | {:>14} | {:>9} | {:>9} | {:<6} |",
        "what", "per op", "ratio", "allocs/op", "goal", "result"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(68),
        "-".repeat(12) + ":",
        "-".repeat(15) + ":",
        "-".repeat(10) + ":",
        "-".repeat(10) + ":",
        "-".repeat(8)
    );
    for row in table {
        match row {
            Row::Section(text) => println!("| **{text}** | | | | | |"),
            Row::Time {
                text,
                ns,
                ratio,
                to,
                allocs,
                goal,
            } => {
                let (goal, result) = match goal {
                    Goal::Baseline => ("baseline".to_owned(), ""),
                    Goal::None => ("".to_owned(), ""),
                    Goal::AtMost(max) => (
                        format!("<= {max:.2}x"),
                        if *ratio <= *max { "PASS" } else { "MISS" },
                    ),
                };
                let allocs = allocs.map_or("-".to_owned(), |a| format!("{a:.2}"));
                println!(
                    "| {:<66} | {:>11} | {:>14} | {:>9} | {:>9} | {:<6} |",
                    text,
                    human_time(*ns),
                    format!("{ratio:.2}x {to}"),
                    allocs,
                    goal,
                    result
                );
            }
            Row::Rate {
                text,
                per_sec,
                baseline,
                notices,
            } => {
                let text = match notices {
                    Some(n) => format!("{text} ({n} wait notices)"),
                    None => text.to_string(),
                };
                println!(
                    "| {:<66} | {:>11} | {:>14} | {:>9} | {:>9} | {:<6} |",
                    text,
                    format!("{:.0}/s", per_sec),
                    format!("{:.2}x raw", per_sec / baseline),
                    "-",
                    "",
                    ""
                );
            }
            Row::Allocs { text, per_call } => {
                let result = if *per_call == 0.0 { "PASS" } else { "MISS" };
                println!(
                    "| {:<66} | {:>11} | {:>14} | {:>9} | {:>9} | {:<6} |",
                    text,
                    "",
                    "",
                    format!("{per_call:.2}"),
                    "0",
                    result
                );
            }
        }
    }
    println!();
    println!(
        "ratio: time per op over its baseline row (lower is better), except contended rows: \
         acquisitions per second over raw (higher is better)."
    );
}

fn human_time(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.1} ns")
    }
}
