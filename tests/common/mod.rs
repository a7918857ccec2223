//! Shared by the behaviour tests: the run's own lock directory, re-running
//! this test binary as a child process in a named role, the one harness
//! that talks to children (every read has a timeout), unique lock names,
//! and loud skips.
//!
//! A test file that needs children defines one ignored test named `child`
//! that dispatches on [`role()`]; [`spawn_role`] starts
//! `current_exe() --exact child --ignored` with the role in the environment.
//!
//! Every test binary that includes this module locks in a directory of its
//! own: before `main`, a fresh one ([`lockattr::__private::TestDir`], in
//! `$TMPDIR`, mode 1777) is pinned as the default directory, handed to
//! every child through [`RUN_DIR_VAR`], and removed when the process exits.
//! Another run on the host, or anything else holding a lock of the same
//! name in `/run/lock`, cannot meet the suite's locks. A child follows the
//! default rules instead (`LOCKATTR_DIR`, `/run/lock`, `/tmp`) when a test
//! sets `LOCKATTR_DIR` for it, or starts it without [`RUN_DIR_VAR`]; the
//! suite's own environment is cleared of `LOCKATTR_DIR` and `LOCKATTR_URL`
//! for that, so that only a test sets them.
#![allow(dead_code)] // each test binary uses a different part

use lockattr::__private::TestDir;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROLE: &str = "LOCKATTR_TEST_ROLE";

/// Whether lockattr can name a holder in another process here. Not with
/// `--cfg lockattr_portable` (CI's second run), which switches `/proc/locks`
/// off as on systems without it: there such a holder is "unknown", and the
/// tests that expect its pid accept that instead.
pub const NAMES_OTHER_PROCESSES: bool = !cfg!(lockattr_portable);

/// What a busy message says of a holder lockattr cannot look up.
pub const UNKNOWN_HOLDER: &str = "unknown: the lock table could not be read";

/// Asserts that a busy message names `pid` as the holder.
pub fn assert_names_pid(message: &str, pid: u32) {
    let named = message
        .split("pid ")
        .skip(1)
        .any(|rest| rest.split(|c: char| !c.is_ascii_digit()).next() == Some(&pid.to_string()));
    let unknown = !NAMES_OTHER_PROCESSES && message.contains(UNKNOWN_HOLDER);
    assert!(
        named || unknown,
        "does not name the holder, pid {pid}: {message}"
    );
}

/// Hands the run's lock directory to child processes.
pub const RUN_DIR_VAR: &str = "LOCKATTR_TEST_RUN_DIR";

/// How long a test waits for a line it expects.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long any child may live before its watchdog kills it.
pub const CHILD_LIMIT: Duration = Duration::from_secs(120);

// ------------------------------------------------------ the lock directory

// Runs before `main`, so that no test and no child can take a lock before
// the directory is pinned, and no test can forget to.
#[used]
#[cfg_attr(
    target_vendor = "apple",
    unsafe(link_section = "__DATA,__mod_init_func")
)]
#[cfg_attr(not(target_vendor = "apple"), unsafe(link_section = ".init_array"))]
static PIN_LOCK_DIR: extern "C" fn() = pin_lock_dir;

static OWN: OnceLock<TestDir> = OnceLock::new();
static PINNED: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn pin_lock_dir() {
    let dir = match std::env::var_os(RUN_DIR_VAR) {
        // A child of a test that set LOCKATTR_DIR for it.
        Some(_) if std::env::var_os("LOCKATTR_DIR").is_some() => return,
        Some(dir) => PathBuf::from(dir),
        // A child started to follow the default rules.
        None if role().is_some() => return,
        None => {
            let own = OWN.get_or_init(TestDir::new);
            // SAFETY: before `main` this process has one thread.
            unsafe {
                std::env::set_var(RUN_DIR_VAR, own.path());
                std::env::remove_var("LOCKATTR_DIR");
                std::env::remove_var("LOCKATTR_URL");
            }
            // SAFETY: registers a function that takes nothing and returns.
            unsafe { libc::atexit(remove_lock_dir) };
            own.path().to_owned()
        }
    };
    if let Err(err) = lockattr::set_default_dir(&dir) {
        panic!("pin the test's lock directory {}: {err}", dir.display());
    }
    let _ = PINNED.set(dir);
}

extern "C" fn remove_lock_dir() {
    if let Some(own) = OWN.get() {
        own.remove();
    }
}

/// The lock directory of this run, pinned as this process's default.
pub fn lock_dir() -> &'static Path {
    PINNED
        .get()
        .expect("a child that follows the default rules has no test directory")
}

/// The directory the default rules pick on this host when neither
/// `set_default_dir` nor `LOCKATTR_DIR` says: `/run/lock` if it is a
/// world-writable sticky directory, else `/tmp`.
pub fn host_default_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let run_lock = Path::new("/run/lock");
    let shared = std::fs::metadata(run_lock)
        .is_ok_and(|meta| meta.is_dir() && meta.permissions().mode() & 0o1002 == 0o1002);
    if shared {
        run_lock.to_owned()
    } else {
        PathBuf::from("/tmp")
    }
}

/// A fresh directory in the run's directory, world-writable and sticky
/// like /tmp, so that several users can share it.
pub fn shared_dir(tag: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let parent = PINNED.get().cloned().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(unique_name(tag));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    dir
}

// ------------------------------------------------------------- children

/// The role this process was started in, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A command that re-runs this test binary as a child in `role`. Add
/// `.env(...)` for its arguments.
pub fn spawn_role(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE, role);
    cmd
}

/// A child process, read line by line on threads of its own, so that each
/// line carries the instant it arrived and every wait for a line has a
/// timeout. Killed and reaped when dropped; killed by a watchdog if it
/// outlives [`CHILD_LIMIT`].
pub struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<(String, Instant)>,
    err: mpsc::Receiver<(String, Instant)>,
    /// Lines of stdout that [`Kid::expect`] passed over.
    seen: Vec<String>,
    /// Every line of stderr read so far.
    stderr: Vec<String>,
    reaped: bool,
    _watchdog: Watchdog,
}

/// How a child ended, and what it printed that no `expect` took.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Kid {
    /// Starts `cmd` with stdin, stdout and stderr piped.
    pub fn start(mut cmd: Command) -> Kid {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("start {cmd:?}: {err}"));
        let watchdog = Watchdog::new(child.id(), CHILD_LIMIT);
        let out = lines_of(child.stdout.take().expect("piped stdout"));
        let err = lines_of(child.stderr.take().expect("piped stderr"));
        Kid {
            stdin: child.stdin.take(),
            child,
            out,
            err,
            seen: Vec::new(),
            stderr: Vec::new(),
            reaped: false,
            _watchdog: watchdog,
        }
    }

    /// This test binary as a child in `role`, with `env` added.
    pub fn role(role: &str, env: &[(&str, &str)]) -> Kid {
        let mut cmd = spawn_role(role);
        cmd.envs(env.iter().copied());
        Kid::start(cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line of stdout that is `word` or starts with `word `;
    /// returns the rest of it and when it arrived.
    pub fn expect(&mut self, word: &str) -> (String, Instant) {
        self.expect_within(word, PATIENCE)
    }

    pub fn expect_within(&mut self, word: &str, within: Duration) -> (String, Instant) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok((line, at)) => {
                    if line == word {
                        return (String::new(), at);
                    }
                    if let Some(rest) = line.strip_prefix(word).and_then(|r| r.strip_prefix(' ')) {
                        return (rest.to_owned(), at);
                    }
                    self.seen.push(line);
                }
                Err(why) => self.fail(&format!("no {word:?} line within {within:?} ({why:?})")),
            }
        }
    }

    /// Asserts that no line `word` (or starting with `word `) arrives for
    /// `quiet`, and that the child does not end meanwhile.
    pub fn silent_for(&mut self, word: &str, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok((line, _)) if line.split(' ').next() == Some(word) => {
                    self.fail(&format!("{line:?} came too early"))
                }
                Ok((line, _)) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => return,
                Err(why) => self.fail(&format!("ended while it should wait ({why:?})")),
            }
        }
    }

    /// Waits for a line of stderr that contains `needle`; returns it and
    /// when it arrived.
    pub fn expect_stderr(&mut self, needle: &str) -> (String, Instant) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok((line, at)) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return (line, at);
                    }
                }
                Err(why) => self.fail(&format!(
                    "no stderr line with {needle:?} within {PATIENCE:?} ({why:?})"
                )),
            }
        }
    }

    /// Its status, if it has ended (it is then reaped).
    pub fn ended(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("poll the child")?;
        self.reaped = true;
        Some(status)
    }

    /// Stdout lines that `expect` passed over so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush to the child");
    }

    /// SIGKILL; returns the instant just before the signal went.
    pub fn kill(&mut self) -> Instant {
        let at = Instant::now();
        self.child.kill().expect("SIGKILL the child");
        at
    }

    /// Closes its input and waits for it to end (the watchdog bounds the
    /// wait), unless it ended already; returns its status.
    pub fn end(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.reaped = true;
        self.child.wait().expect("wait for the child")
    }

    /// [`Kid::end`], and what it printed that no `expect` took.
    pub fn finish(mut self) -> Finished {
        let status = self.end();
        let mut stdout = std::mem::take(&mut self.seen);
        stdout.extend(self.rest(Stream::Out));
        let mut stderr = std::mem::take(&mut self.stderr);
        stderr.extend(self.rest(Stream::Err));
        let text = |lines: Vec<String>| lines.into_iter().map(|l| l + "\n").collect();
        Finished {
            status,
            stdout: text(stdout),
            stderr: text(stderr),
        }
    }

    /// The lines of a stream that the ended child left unread, up to the
    /// end of the stream.
    fn rest(&mut self, stream: Stream) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let channel = match stream {
                Stream::Out => &self.out,
                Stream::Err => &self.err,
            };
            match channel.recv_timeout(PATIENCE) {
                Ok((line, _)) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "child {} ended, but its {stream:?} stayed open for {PATIENCE:?} (a process \
                     it started keeps it?); read so far: {lines:#?}",
                    self.child.id()
                ),
            }
        }
    }

    /// Kills the child and fails the test with what it printed.
    pub fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        let mut stderr = std::mem::take(&mut self.stderr);
        while let Ok((line, _)) = self.err.recv_timeout(Duration::from_secs(1)) {
            stderr.push(line);
        }
        panic!(
            "child {}: {what}; it printed {:#?}; stderr: {stderr:#?}",
            self.child.id(),
            self.seen,
        );
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Out,
    Err,
}

/// The lines of `pipe`, each with the instant it was read, from a thread.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<(String, Instant)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send((line, Instant::now())).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `cmd` to its end (stdin closed at once) and returns how it ended.
pub fn output(cmd: Command) -> Finished {
    Kid::start(cmd).finish()
}

/// Kills a process that outlives its limit, unless dropped first.
pub struct Watchdog {
    _cancel: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn new(pid: u32, limit: Duration) -> Watchdog {
        let (cancel, cancelled) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
                loud(&format!(
                    "watchdog: pid {pid} outlived {limit:?}; killing it"
                ));
                kill(pid);
            }
        });
        Watchdog { _cancel: cancel }
    }
}

/// SIGKILL to a process this test started.
pub fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// Waits until every thread of this process in `tids` sleeps in futex(2)
/// or flock(2), as `/proc/self/task/TID/syscall` shows: then it waits for
/// a lock (it is not still on its way in).
pub fn until_threads_sleep(tids: &[i32]) {
    let sleeping = |tid: &i32| {
        let syscall = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"));
        syscall
            .ok()
            .and_then(|text| text.split(' ').next()?.parse::<libc::c_long>().ok())
            .is_some_and(|nr| nr == libc::SYS_futex || nr == libc::SYS_flock)
    };
    let start = Instant::now();
    while !tids.iter().all(sleeping) {
        assert!(
            start.elapsed() < PATIENCE,
            "threads {tids:?} never all slept in futex or flock"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// This thread's id, for [`until_threads_sleep`].
pub fn tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

// ----------------------------------------------------------------- misc

/// Whether another thread finds `lock` busy right now. Any failure other
/// than busy fails the test: a probe must not read an error as "held".
pub fn busy_elsewhere(lock: lockattr::Lock) -> bool {
    std::thread::spawn(move || match lock.acquire() {
        Ok(_guard) => false,
        Err(err) if err.is_busy() => true,
        Err(err) => panic!("probing the lock failed: {err}"),
    })
    .join()
    .expect("the probing thread")
}

/// Holds `lock` on another thread while `f` runs.
pub fn while_held<T>(lock: lockattr::Lock, f: impl FnOnce() -> T) -> T {
    let (held_tx, held_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let guard = lock.acquire().expect("the holder takes the lock");
        held_tx.send(()).expect("tell the test");
        let _ = stop_rx.recv();
        drop(guard);
    });
    held_rx.recv().expect("the holder took the lock");
    let out = f();
    drop(stop_tx);
    holder.join().expect("the holder thread");
    out
}

/// `err` says busy, for lock `name`, held by another thread or task of
/// this process.
pub fn assert_busy_here(err: &lockattr::Error, name: &str) {
    assert!(err.is_busy(), "expected busy, got: {err}");
    assert_eq!(err.lock_name(), Some(name));
    let pid = std::process::id();
    assert_eq!(
        err.holder(),
        Some(&lockattr::Holder::ThisProcess { pid }),
        "{err}"
    );
}

/// An example program of the workspace, which `cargo test` builds beside
/// the test binaries (`target/debug/examples`). `Err` says why there is
/// none to trust: not built (`cargo test --tests`), or older than its
/// source or lockattr's, as a build by an earlier `cargo test` would be.
pub fn example(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/NAME
    let examples = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = examples.join("examples").join(name);
    let built = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .map_err(|_| format!("{} is not built", path.display()))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("examples").join(format!("{name}.rs"))];
    sources.extend(["lockattr/src", "lockattr-macros/src"].map(|dir| root.join(dir)));
    while let Some(source) = sources.pop() {
        if let Ok(entries) = std::fs::read_dir(&source) {
            sources.extend(entries.filter_map(Result::ok).map(|entry| entry.path()));
        } else if std::fs::metadata(&source)
            .and_then(|meta| meta.modified())
            .is_ok_and(|changed| changed > built)
        {
            return Err(format!(
                "{} is older than {}",
                path.display(),
                source.display()
            ));
        }
    }
    Ok(path)
}

/// A lock name no other test of this process uses.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `&'static str` for APIs that take one (`Lock::dir`, `Lock::at_path`).
pub fn leak(s: impl Into<String>) -> &'static str {
    Box::leak(s.into().into_boxed_str())
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// For tests that need root: says so loudly and returns false when not
/// root. CI runs as root, so there they always run.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    loud(&format!(
        "SKIPPED {test}: needs root (useradd, runuser, sysctl); CI runs it as root"
    ));
    false
}

/// For tests that need a command: says so loudly when it is missing.
pub fn require_command(test: &str, command: &str) -> bool {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("command -v {command}")]);
    let found = output(cmd).status.success();
    if !found {
        loud(&format!(
            "SKIPPED {test}: `{command}` is not installed; .ci/run installs it"
        ));
    }
    found
}

/// Writes straight to stderr: libtest captures `eprintln!` of passing
/// tests, but not writes to the stderr handle itself.
pub fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

// ------------------------------------------------------------ /proc/locks

/// The flock(2) entries on `path` in /proc/locks: (pid, blocked waiter?).
pub fn flocks(path: &Path) -> Vec<(u32, bool)> {
    flocks_in(&proc_locks(), path)
}

pub fn flocks_in(locks: &str, path: &Path) -> Vec<(u32, bool)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).expect("stat the lock file");
    let key = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(meta.dev()),
        rustix::fs::minor(meta.dev()),
        meta.ino()
    );
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, "->", "FLOCK", _, _, pid, id, ..] if *id == key => {
                    Some((pid.parse().ok()?, true))
                }
                [_, "FLOCK", _, _, pid, id, ..] if *id == key => Some((pid.parse().ok()?, false)),
                _ => None,
            }
        })
        .collect()
}

/// /proc/locks as one consistent listing. The kernel lists the locks anew
/// for each read(2) and continues by position, so a lock that comes or
/// goes between two reads of one pass shifts the rest: an entry shows up
/// twice or not at all. Read until two passes agree. (Each listing takes
/// the kernel's file-lock rwsem for writing: the first read after a pause
/// waits for an RCU grace period, milliseconds, and flock(2) calls on the
/// machine take a slower path for a while. Fine for a test, not for a
/// benchmark.)
pub fn proc_locks() -> String {
    let pass = || std::fs::read("/proc/locks").expect("read /proc/locks");
    let mut last = pass();
    loop {
        let next = pass();
        if next == last {
            return String::from_utf8_lossy(&next).into_owned();
        }
        last = next;
    }
}

/// Waits until process `pid` is blocked in flock(2) on `path`, as the
/// kernel lists it: then it truly waits (it is not still starting up).
pub fn until_blocked_in_kernel(path: &Path, pid: u32) {
    let start = Instant::now();
    while !flocks(path).contains(&(pid, true)) {
        assert!(
            start.elapsed() < PATIENCE,
            "pid {pid} never blocked in flock on {}: {:?}",
            path.display(),
            flocks(path)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How many descriptors this process has open on `path`.
pub fn descriptors_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}
