//! Every function shape of the SPEC under `#[exclusive]`: it compiles, the
//! body runs while the lock is held, and the busy and setup-failure outcomes
//! are the ones the return type calls for.
//!
//! "Busy" is made inside this process by holding the lock from another
//! thread (threads of one process exclude each other like processes). Each
//! test uses its own lock name, since the tests run in parallel.

mod common;

use lockattr::{Lock, LockName, exclusive};
use std::io::Read;
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A directory that does not exist, so that opening the lock file fails.
const MISSING_DIR: &str = "/nonexistent-lockattr-dir";

fn named(name: &'static str) -> Lock {
    Lock::new(LockName::new(name))
}

/// Holds a lock on another thread until dropped.
struct Held {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn hold(lock: Lock) -> Held {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        let guard = lock.acquire().expect("the holder thread takes the lock");
        ready_tx.send(()).expect("tell the test the lock is held");
        let _ = stop_rx.recv();
        drop(guard);
    });
    ready_rx
        .recv()
        .expect("the holder thread took the lock before the test went on");
    Held {
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The message of a caught panic.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "<non-text panic>".to_owned(), |s| (*s).to_owned()),
    }
}

// ---------------------------------------------------------------- free fn

static FREE_RUNS: AtomicU32 = AtomicU32::new(0);

#[exclusive("shapes-free")]
fn free(x: u32) -> Result<u32, lockattr::Error> {
    FREE_RUNS.fetch_add(1, Ordering::SeqCst);
    assert!(
        common::busy_elsewhere(named("shapes-free")),
        "the body runs under the lock"
    );
    Ok(x * 2)
}

#[test]
fn free_fn_runs_under_the_lock_and_is_busy_while_held() {
    assert_eq!(free(21).unwrap(), 42);
    assert!(
        !common::busy_elsewhere(named("shapes-free")),
        "released on return"
    );

    let held = hold(named("shapes-free"));
    let before = FREE_RUNS.load(Ordering::SeqCst);
    let err = free(1).unwrap_err();
    common::assert_busy_here(&err, "shapes-free");
    assert_eq!(
        FREE_RUNS.load(Ordering::SeqCst),
        before,
        "busy: the body did not run"
    );
    drop(held);

    assert_eq!(free(2).unwrap(), 4, "runs again once the holder let go");
}

// ----------------------------------------------------------------- `()` fn

static UNIT_RUNS: AtomicU32 = AtomicU32::new(0);

#[exclusive("shapes-unit")]
fn unit() {
    UNIT_RUNS.fetch_add(1, Ordering::SeqCst);
    assert!(common::busy_elsewhere(named("shapes-unit")));
}

#[test]
fn unit_fn_returns_without_running_when_busy() {
    let before = UNIT_RUNS.load(Ordering::SeqCst);
    unit();
    assert_eq!(UNIT_RUNS.load(Ordering::SeqCst), before + 1);

    let held = hold(named("shapes-unit"));
    unit();
    assert_eq!(
        UNIT_RUNS.load(Ordering::SeqCst),
        before + 1,
        "busy: skipped"
    );
    drop(held);
}

#[exclusive("shapes-unit-child")]
fn unit_in_child() {
    println!("RAN");
}

/// In another process the `()` outcome is one stderr line naming the lock,
/// its file and the holder's pid.
#[test]
fn unit_fn_busy_in_another_process_prints_one_line() {
    let lock = named("shapes-unit-child");
    let held = hold(lock);
    let out = common::output(common::spawn_role("unit"));
    drop(held);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l == "DONE"),
        "child stdout: {stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l == "RAN"),
        "busy: the body must not run"
    );
    let path = lock.path().unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("shapes-unit-child"))
        .collect();
    assert_eq!(lines.len(), 1, "one line about the lock; stderr: {stderr}");
    let line = lines[0];
    assert!(line.contains("busy"), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
    // The holder, a thread of this process, is in /proc/locks: named.
    common::assert_names_pid(line, std::process::id());
}

// ---------------------------------------------------------------- methods

struct Counter {
    n: u32,
    fallback: u32,
}

impl Counter {
    #[exclusive("shapes-method-self")]
    fn into_count(self) -> Result<u32, lockattr::Error> {
        assert!(common::busy_elsewhere(named("shapes-method-self")));
        Ok(self.n)
    }

    #[exclusive("shapes-method-ref")]
    fn count(&self) -> Result<u32, lockattr::Error> {
        assert!(common::busy_elsewhere(named("shapes-method-ref")));
        Ok(self.n)
    }

    #[exclusive("shapes-method-mut")]
    fn bump(&mut self) -> Result<u32, lockattr::Error> {
        assert!(common::busy_elsewhere(named("shapes-method-mut")));
        self.n += 1;
        Ok(self.n)
    }

    /// `on_busy` may use `self` and the parameters.
    #[exclusive("shapes-method-on-busy", on_busy = self.fallback + extra)]
    fn count_or_fallback(&self, extra: u32) -> u32 {
        self.n + extra
    }
}

trait Tool {
    fn run(&self) -> Result<&'static str, lockattr::Error>;
}

impl Tool for Counter {
    #[exclusive("shapes-trait-impl")]
    fn run(&self) -> Result<&'static str, lockattr::Error> {
        assert!(common::busy_elsewhere(named("shapes-trait-impl")));
        Ok("ran")
    }
}

#[test]
fn methods_with_every_receiver() {
    let mut c = Counter {
        n: 1,
        fallback: 100,
    };
    assert_eq!(c.count().unwrap(), 1);
    assert_eq!(c.bump().unwrap(), 2);
    assert_eq!(c.count_or_fallback(3), 5);
    assert_eq!(c.run().unwrap(), "ran");
    {
        let _held = hold(named("shapes-method-ref"));
        common::assert_busy_here(&c.count().unwrap_err(), "shapes-method-ref");
    }
    {
        let _held = hold(named("shapes-method-mut"));
        common::assert_busy_here(&c.bump().unwrap_err(), "shapes-method-mut");
        assert_eq!(c.n, 2, "busy: the body did not run");
    }
    {
        let _held = hold(named("shapes-method-on-busy"));
        assert_eq!(c.count_or_fallback(3), 103, "on_busy used self and `extra`");
    }
    {
        let _held = hold(named("shapes-trait-impl"));
        common::assert_busy_here(&c.run().unwrap_err(), "shapes-trait-impl");
    }
    {
        let _held = hold(named("shapes-method-self"));
        let moved = Counter { n: 7, fallback: 0 };
        common::assert_busy_here(&moved.into_count().unwrap_err(), "shapes-method-self");
    }
    assert_eq!(c.into_count().unwrap(), 2);
}

// ---------------------------------------------------------------- generics

#[exclusive("shapes-generic")]
fn largest<'a, T, I>(items: I) -> Result<Option<&'a T>, lockattr::Error>
where
    T: Ord + 'a,
    I: IntoIterator<Item = &'a T>,
{
    assert!(common::busy_elsewhere(named("shapes-generic")));
    Ok(items.into_iter().max())
}

/// The return type is the type parameter itself.
#[exclusive("shapes-generic-return", on_busy = T::default())]
fn seven<T>() -> T
where
    T: Default + From<u8>,
{
    T::from(7)
}

#[test]
fn generic_fn_with_where_clause() {
    assert_eq!(largest(&[3, 9, 4]).unwrap(), Some(&9));
    assert_eq!(largest(&["b", "a"]).unwrap(), Some(&"b"));
    assert_eq!(seven::<u32>(), 7);
    assert_eq!(seven::<f64>(), 7.0);
    let _held = hold(named("shapes-generic"));
    common::assert_busy_here(&largest(&[1]).unwrap_err(), "shapes-generic");
    let _held = hold(named("shapes-generic-return"));
    assert_eq!(seven::<u64>(), 0, "on_busy = T::default()");
}

// ------------------------------------------------------------ impl Trait

#[exclusive("shapes-impl-trait", on_busy = Vec::new().into_iter())]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    assert!(common::busy_elsewhere(named("shapes-impl-trait")));
    (0..limit)
        .filter(|n| n % 2 == 0)
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn impl_trait_return_with_on_busy() {
    assert_eq!(evens(7).collect::<Vec<_>>(), [0, 2, 4, 6]);
    let _held = hold(named("shapes-impl-trait"));
    assert_eq!(evens(7).count(), 0, "busy: on_busy's empty iterator");
}

// --------------------------------------------------------------- unsafe fn

/// # Safety
///
/// `p` must point to a live `u32`.
#[exclusive("shapes-unsafe")]
unsafe fn read(p: *const u32) -> Result<u32, lockattr::Error> {
    assert!(common::busy_elsewhere(named("shapes-unsafe")));
    // SAFETY: the caller promises `p` is valid.
    Ok(unsafe { *p })
}

#[test]
fn unsafe_fn() {
    let x = 5u32;
    // SAFETY: `&x` is a live u32.
    assert_eq!(unsafe { read(&x) }.unwrap(), 5);
    let _held = hold(named("shapes-unsafe"));
    // SAFETY: as above.
    common::assert_busy_here(&unsafe { read(&x) }.unwrap_err(), "shapes-unsafe");
}

// ---------------------------------------------------------------- async fn

fn assert_send<T: Send>(_: &T) {}

#[exclusive("shapes-async")]
async fn fetch(x: u32) -> Result<u32, lockattr::Error> {
    tokio::task::yield_now().await;
    // Still held after an `.await`: the guard lives across it.
    assert!(common::busy_elsewhere(named("shapes-async")));
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(x + 1)
}

#[exclusive("shapes-async-on-busy", on_busy = fallback.to_owned())]
async fn fetch_or(fallback: &str) -> String {
    tokio::task::yield_now().await;
    assert!(common::busy_elsewhere(named("shapes-async-on-busy")));
    "fresh".to_owned()
}

struct Service {
    base: u32,
}

impl Service {
    #[exclusive("shapes-async-method")]
    async fn call(&self, x: u32) -> Result<u32, lockattr::Error> {
        tokio::task::yield_now().await;
        assert!(common::busy_elsewhere(named("shapes-async-method")));
        Ok(self.base + x)
    }
}

#[test]
fn async_fn_is_send_and_holds_across_await() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    let fut = fetch(1);
    assert_send(&fut);
    assert_eq!(rt.block_on(fut).unwrap(), 2);
    // Spawning needs `Send + 'static`.
    assert_eq!(rt.block_on(rt.spawn(fetch(10))).unwrap().unwrap(), 11);
    assert!(
        !common::busy_elsewhere(named("shapes-async")),
        "released after the future"
    );

    let service = Service { base: 100 };
    let fut = service.call(1);
    assert_send(&fut);
    assert_eq!(rt.block_on(fut).unwrap(), 101);

    let fut = fetch_or("stale");
    assert_send(&fut);
    assert_eq!(rt.block_on(fut), "fresh");

    {
        let _held = hold(named("shapes-async"));
        common::assert_busy_here(&rt.block_on(fetch(1)).unwrap_err(), "shapes-async");
    }
    {
        let _held = hold(named("shapes-async-method"));
        common::assert_busy_here(
            &rt.block_on(service.call(1)).unwrap_err(),
            "shapes-async-method",
        );
    }
    {
        let _held = hold(named("shapes-async-on-busy"));
        assert_eq!(
            rt.block_on(fetch_or("stale")),
            "stale",
            "on_busy used the parameter"
        );
    }
}

// ----------------------------------------------------------- #[tokio::main]

#[exclusive("shapes-tokio-outer")]
#[tokio::main(flavor = "current_thread")]
async fn exclusive_over_tokio_main(x: u32) -> Result<u32, lockattr::Error> {
    tokio::task::yield_now().await;
    assert!(common::busy_elsewhere(named("shapes-tokio-outer")));
    Ok(x)
}

#[tokio::main(flavor = "current_thread")]
#[exclusive("shapes-tokio-inner")]
async fn tokio_main_over_exclusive(x: u32) -> Result<u32, lockattr::Error> {
    tokio::task::yield_now().await;
    assert!(common::busy_elsewhere(named("shapes-tokio-inner")));
    Ok(x)
}

#[test]
fn with_tokio_main_in_either_order() {
    assert_eq!(exclusive_over_tokio_main(1).unwrap(), 1);
    assert_eq!(tokio_main_over_exclusive(2).unwrap(), 2);
    {
        let _held = hold(named("shapes-tokio-outer"));
        common::assert_busy_here(
            &exclusive_over_tokio_main(1).unwrap_err(),
            "shapes-tokio-outer",
        );
    }
    {
        let _held = hold(named("shapes-tokio-inner"));
        common::assert_busy_here(
            &tokio_main_over_exclusive(2).unwrap_err(),
            "shapes-tokio-inner",
        );
    }
}

// ------------------------------------------------- #[must_use] and docs

/// Counts the targets. This doc comment, and `#[must_use]` (whose lint is
/// checked in `ui-tests/must-use.rs`), stay on the function.
#[exclusive("shapes-attrs", on_busy = 0)]
#[must_use = "the count says whether anything was built"]
#[inline]
fn targets() -> usize {
    assert!(common::busy_elsewhere(named("shapes-attrs")));
    3
}

#[test]
fn must_use_and_docs_are_kept() {
    let n = targets();
    assert_eq!(n, 3);
    let _held = hold(named("shapes-attrs"));
    assert_eq!(targets(), 0);
}

// ------------------------------------------------------- `return` and `?`

#[exclusive("shapes-return-question")]
fn parse(text: &str) -> anyhow::Result<u32> {
    if text.is_empty() {
        return Ok(0);
    }
    let n: u32 = text.trim().parse()?;
    Ok(n)
}

#[exclusive("shapes-question-io")]
fn read_missing(path: &str) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[test]
fn return_and_question_mark_keep_their_meaning() {
    let lock = named("shapes-return-question");
    assert_eq!(parse("").unwrap(), 0, "early `return` value comes through");
    assert!(!common::busy_elsewhere(lock), "released after `return`");
    assert_eq!(parse(" 12 ").unwrap(), 12);

    let err = parse("twelve").unwrap_err();
    assert!(
        err.downcast_ref::<std::num::ParseIntError>().is_some(),
        "the body's own error, untouched: {err:?}"
    );
    assert!(
        err.downcast_ref::<lockattr::Error>().is_none(),
        "not a lock error"
    );
    assert!(!common::busy_elsewhere(lock), "released after `?`");

    let err = read_missing("/nonexistent-lockattr-dir/input").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(
        err.get_ref().is_none(),
        "the OS error itself, not a wrapped lockattr::Error: {err:?}"
    );
    assert!(!common::busy_elsewhere(named("shapes-question-io")));
}

// ------------------------------------------------------ diverging on_busy

// A diverging `on_busy` compiles without warnings (the suite denies them in
// clippy).
#[exclusive("shapes-diverge", on_busy = panic!("shapes-diverge is busy, giving up"))]
fn diverge() -> u32 {
    1
}

#[exclusive("shapes-exit-child", on_busy = std::process::exit(3))]
fn exit_when_busy() -> u32 {
    7
}

#[test]
fn diverging_on_busy() {
    assert_eq!(diverge(), 1);
    let _held = hold(named("shapes-diverge"));
    let text = panic_text(catch_unwind(diverge).unwrap_err());
    assert_eq!(text, "shapes-diverge is busy, giving up");
}

#[test]
fn on_busy_exit_ends_the_process() {
    let run = || common::output(common::spawn_role("exit"));
    let out = run();
    let stdout = &out.stdout;
    assert!(out.status.success(), "free: {stdout}");
    assert!(stdout.lines().any(|l| l == "RESULT 7"), "free: {stdout}");

    let held = hold(named("shapes-exit-child"));
    let out = run();
    drop(held);
    let stdout = &out.stdout;
    assert_eq!(
        out.status.code(),
        Some(3),
        "busy: exit(3); stdout: {stdout}"
    );
    assert!(!stdout.contains("RESULT"), "busy: no result: {stdout}");
}

// ----------------------------------------------- error types on busy

#[exclusive("shapes-err-io")]
fn with_io() -> std::io::Result<()> {
    Ok(())
}

#[exclusive("shapes-err-anyhow")]
fn with_anyhow() -> anyhow::Result<()> {
    Ok(())
}

#[exclusive("shapes-err-box")]
fn with_box() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(())
}

#[exclusive("shapes-err-box-plain")]
fn with_plain_box() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

#[test]
fn busy_as_err_in_every_error_type() {
    with_io().unwrap();
    with_anyhow().unwrap();
    with_box().unwrap();
    with_plain_box().unwrap();

    let held = hold(named("shapes-err-io"));
    let err = with_io().unwrap_err();
    drop(held);
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<lockattr::Error>())
        .expect("the lockattr::Error inside the io::Error");
    common::assert_busy_here(inner, "shapes-err-io");

    let held = hold(named("shapes-err-anyhow"));
    let err = with_anyhow().unwrap_err();
    drop(held);
    common::assert_busy_here(
        err.downcast_ref().expect("a lockattr::Error"),
        "shapes-err-anyhow",
    );

    let held = hold(named("shapes-err-box"));
    let err = with_box().unwrap_err();
    drop(held);
    common::assert_busy_here(
        err.downcast_ref().expect("a lockattr::Error"),
        "shapes-err-box",
    );

    let held = hold(named("shapes-err-box-plain"));
    let err = with_plain_box().unwrap_err();
    drop(held);
    common::assert_busy_here(
        err.downcast_ref().expect("a lockattr::Error"),
        "shapes-err-box-plain",
    );
}

// ------------------------------------------------------ setup errors

static SETUP_RUNS: AtomicU32 = AtomicU32::new(0);

#[exclusive("shapes-setup-result", dir = "/nonexistent-lockattr-dir")]
fn setup_result() -> Result<(), lockattr::Error> {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[exclusive("shapes-setup-anyhow", dir = "/nonexistent-lockattr-dir")]
fn setup_anyhow() -> anyhow::Result<()> {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[exclusive("shapes-setup-io", dir = "/nonexistent-lockattr-dir")]
fn setup_io() -> std::io::Result<()> {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[exclusive("shapes-setup-unit", dir = "/nonexistent-lockattr-dir")]
fn setup_unit() {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[exclusive("shapes-setup-on-busy", dir = "/nonexistent-lockattr-dir", on_busy = 0)]
fn setup_on_busy_value() -> u32 {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
    1
}

#[exclusive("shapes-setup-on-busy-result", dir = "/nonexistent-lockattr-dir", on_busy = Ok(0))]
fn setup_on_busy_result() -> Result<u32, lockattr::Error> {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[exclusive("shapes-setup-async", dir = "/nonexistent-lockattr-dir")]
async fn setup_async() -> Result<(), lockattr::Error> {
    SETUP_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn assert_setup_error(err: &lockattr::Error, name: &str) {
    assert!(!err.is_busy(), "a setup error is never busy: {err}");
    assert_eq!(err.kind(), lockattr::ErrorKind::Io, "{err}");
    assert_eq!(err.lock_name(), Some(name));
    assert!(err.path().unwrap().starts_with(MISSING_DIR), "{err}");
    assert_eq!(
        err.os_error().and_then(std::io::Error::raw_os_error),
        Some(rustix::io::Errno::NOENT.raw_os_error()),
        "{err}"
    );
    assert!(
        err.to_string().contains(MISSING_DIR),
        "Display names the file: {err}"
    );
}

#[test]
fn setup_error_is_err_or_panic_never_busy() {
    let before = SETUP_RUNS.load(Ordering::SeqCst);

    assert_setup_error(&setup_result().unwrap_err(), "shapes-setup-result");

    let err = setup_anyhow().unwrap_err();
    assert_setup_error(
        err.downcast_ref().expect("a lockattr::Error"),
        "shapes-setup-anyhow",
    );

    let err = setup_io().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<lockattr::Error>());
    assert_setup_error(inner.expect("a lockattr::Error"), "shapes-setup-io");

    let text = panic_text(catch_unwind(setup_unit).unwrap_err());
    assert!(
        text.contains("/nonexistent-lockattr-dir/shapes-setup-unit.lock"),
        "the panic names the path: {text}"
    );
    assert!(text.contains("os error"), "and the OS error: {text}");
    assert!(!text.contains("busy"), "{text}");

    let text = panic_text(catch_unwind(setup_on_busy_value).unwrap_err());
    assert!(
        text.contains("/nonexistent-lockattr-dir/shapes-setup-on-busy.lock"),
        "on_busy does not replace a setup error: {text}"
    );

    assert_setup_error(
        &setup_on_busy_result().unwrap_err(),
        "shapes-setup-on-busy-result",
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_setup_error(
        &rt.block_on(setup_async()).unwrap_err(),
        "shapes-setup-async",
    );

    assert_eq!(SETUP_RUNS.load(Ordering::SeqCst), before, "no body ran");
}

// ------------------------------------------------------------ shared

static READERS_INSIDE: AtomicU32 = AtomicU32::new(0);

/// Waits inside the lock until `n` readers are inside at once.
#[exclusive("shapes-shared", shared)]
fn read_together(n: u32) -> Result<bool, lockattr::Error> {
    READERS_INSIDE.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while READERS_INSIDE.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let met = READERS_INSIDE.load(Ordering::SeqCst) >= n;
    Ok(met)
}

#[exclusive("shapes-shared")]
fn write() -> Result<(), lockattr::Error> {
    Ok(())
}

#[test]
fn shared_holders_overlap() {
    let readers: Vec<_> = (0..2).map(|_| thread::spawn(|| read_together(2))).collect();
    for reader in readers {
        let met = reader
            .join()
            .unwrap()
            .expect("a shared reader is never busy here");
        assert!(met, "both readers were inside at the same time");
    }

    write().unwrap();
    {
        let _held = hold(named("shapes-shared").shared());
        common::assert_busy_here(&write().unwrap_err(), "shapes-shared");
    }
    {
        let _held = hold(named("shapes-shared"));
        common::assert_busy_here(&read_together(1).unwrap_err(), "shapes-shared");
    }
}

// ------------------------------------------------------------ path =

// A fixed path would be one file for every run on the host. Through
// /proc/self/cwd it is a file of the run's own directory, in which the
// child that runs `at_path` works (only the last component must not be a
// symlink).
const PATH: &str = "/proc/self/cwd/shapes-path.lock";

#[exclusive(path = "/proc/self/cwd/shapes-path.lock")]
fn at_path() -> Result<(), lockattr::Error> {
    assert!(common::busy_elsewhere(Lock::at_path(PATH)));
    Ok(())
}

fn path_role() {
    at_path().unwrap();
    assert!(
        std::path::Path::new(PATH).is_file(),
        "the lock file is there"
    );
    let _held = hold(Lock::at_path(PATH));
    let err = at_path().unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert_eq!(err.path(), Some(std::path::Path::new(PATH)));
}

#[test]
fn path_option() {
    let mut cmd = common::spawn_role("path");
    cmd.current_dir(common::lock_dir());
    let out = common::output(cmd);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "DONE"), "{out:?}");
    assert!(
        common::lock_dir().join("shapes-path.lock").is_file(),
        "the file at the path"
    );
}

// ------------------------------------------------------------ const names

const SHAPES_CONST: LockName = LockName::new("shapes-const");

#[exclusive(SHAPES_CONST)]
fn with_const() -> Result<(), lockattr::Error> {
    assert!(common::busy_elsewhere(Lock::new(SHAPES_CONST)));
    Ok(())
}

struct Job;

impl Job {
    const NAME: LockName = LockName::new("shapes-self-const");

    #[exclusive(Self::NAME, on_busy = false)]
    fn run(&self) -> bool {
        assert!(common::busy_elsewhere(Lock::new(Self::NAME)));
        true
    }
}

#[test]
fn const_names() {
    with_const().unwrap();
    assert!(Job.run());
    {
        let _held = hold(Lock::new(SHAPES_CONST));
        common::assert_busy_here(&with_const().unwrap_err(), "shapes-const");
    }
    let _held = hold(Lock::new(Job::NAME));
    assert!(!Job.run());
}

trait Named {
    const NAME: LockName;
}

struct First;
struct Second;

impl Named for First {
    const NAME: LockName = LockName::new("shapes-generic-const-first");
}

impl Named for Second {
    const NAME: LockName = LockName::new("shapes-generic-const-second");
}

struct Runner<J>(std::marker::PhantomData<J>);

impl<J: Named> Runner<J> {
    #[exclusive(J::NAME)]
    fn run() -> Result<(), lockattr::Error> {
        assert!(common::busy_elsewhere(Lock::new(J::NAME)));
        Ok(())
    }
}

#[test]
fn const_name_from_a_type_parameter() {
    let _held = hold(Lock::new(Second::NAME));
    Runner::<First>::run().expect("First's lock is free");
    let err = Runner::<Second>::run().expect_err("Second's lock is held");
    common::assert_busy_here(&err, "shapes-generic-const-second");
}

// ------------------------------------------------------------ children

/// Runs in a child process started by a test above.
#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    match common::role().as_deref() {
        Some("unit") => unit_in_child(),
        Some("exit") => println!("RESULT {}", exit_when_busy()),
        Some("path") => path_role(),
        Some(other) => panic!("unknown role {other:?}"),
        // Run by hand with `--ignored`: nothing to do.
        None => return,
    }
    println!("DONE");
}

// ------------------------------------------------------------ -> !

// A server loop that never returns takes `on_busy` like any other function.
#[exclusive("shapes-never", on_busy = std::process::exit(0))]
fn serve_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[test]
fn a_never_returning_function_compiles() {
    let _compiled: fn() -> ! = serve_forever;
}

/// A name of exactly 200 bytes, the longest there may be, compiles and
/// locks (one more byte is the UI case too-long-name).
#[exclusive(
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
)]
fn longest_name() -> Result<usize, lockattr::Error> {
    Ok(1)
}

#[test]
fn a_name_of_200_bytes_locks() {
    assert_eq!(longest_name().unwrap(), 1);
    let path = common::lock_dir().join(format!("{}.lock", "x".repeat(200)));
    assert!(path.is_file(), "{} was made", path.display());
}
