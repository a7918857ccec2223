//! `on_busy = |err| ...`: a closure of one argument, called with the busy
//! `lockattr::Error` (by value) when the lock is busy, whose result the
//! function returns. A setup failure still follows the return type, as
//! with `on_busy = EXPR`. And a `Result<impl Trait, E>` return, which the
//! body cannot name, gets `Err` like any `Result` when `E` converts.

mod common;

use lockattr::{Lock, LockName, exclusive};
use std::sync::atomic::{AtomicU32, Ordering};

fn named(name: &'static str) -> Lock {
    Lock::new(LockName::new(name))
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

const MISSING_DIR: &str = "/nonexistent-lockattr-dir";

// ------------------------------------------- the user's own busy line

static REPORT_RUNS: AtomicU32 = AtomicU32::new(0);

/// In place of lockattr's busy line, one of the tool's own, naming the
/// holder.
#[exclusive("ob-report", on_busy = |err| {
    let holder = err.holder().map_or_else(|| "nobody known".to_owned(), ToString::to_string);
    eprintln!("report: skipped, the report is being written by {holder}");
})]
fn report() {
    REPORT_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_closure_prints_its_own_line_naming_the_holder() {
    let out = common::while_held(named("ob-report"), || {
        common::output(common::spawn_role("report"))
    });
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l == "RUNS 0"),
        "busy: skipped: {stdout}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "only the closure's line: {stderr}");
    assert!(
        lines[0].starts_with("report: skipped, the report is being written by "),
        "{stderr}"
    );
    common::assert_names_pid(lines[0], std::process::id());

    report();
    assert_eq!(REPORT_RUNS.load(Ordering::SeqCst), 1, "free: the body ran");
}

// ------------------------------------------- the user's own error type

/// An error type of the tool's own, without `From<lockattr::Error>`.
#[derive(Debug, PartialEq)]
enum ToolError {
    Busy { lock: String, holder: Option<u32> },
}

#[exclusive("ob-mapped", on_busy = |err: lockattr::Error| Err(ToolError::Busy {
    lock: err.lock_name().unwrap_or_default().to_owned(),
    holder: err.holder().and_then(lockattr::Holder::pid),
}))]
fn mapped(n: u32) -> Result<u32, ToolError> {
    Ok(n + 1)
}

#[exclusive("ob-mapped-setup", dir = "/nonexistent-lockattr-dir", on_busy = |err| Err(ToolError::Busy {
    lock: err.to_string(),
    holder: None,
}))]
fn mapped_setup() -> Result<u32, ToolError> {
    Ok(0)
}

#[test]
fn a_closure_maps_busy_to_the_users_error() {
    assert_eq!(mapped(1), Ok(2));
    let busy = common::while_held(named("ob-mapped"), || mapped(1));
    assert_eq!(
        busy,
        Err(ToolError::Busy {
            lock: "ob-mapped".to_owned(),
            holder: Some(std::process::id()),
        })
    );
    // A setup failure is no "busy": `ToolError` cannot hold it, so it
    // panics, naming the file, as without `on_busy`.
    let text = panic_text(std::panic::catch_unwind(mapped_setup).unwrap_err());
    assert!(text.contains(MISSING_DIR), "{text}");
    assert!(!text.contains("busy"), "{text}");
}

// ------------------------------------------- on an async fn

#[exclusive("ob-async", on_busy = |err: lockattr::Error| {
    let held_by = err.holder().and_then(lockattr::Holder::pid);
    Err(format!("busy, held by {held_by:?}"))
})]
async fn fetch(id: u32) -> Result<u32, String> {
    tokio::task::yield_now().await;
    assert!(
        common::busy_elsewhere(named("ob-async")),
        "held across .await"
    );
    Ok(id)
}

#[test]
fn a_closure_on_an_async_fn() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(rt.spawn(fetch(7))).unwrap(), Ok(7));
    let busy = common::while_held(named("ob-async"), || rt.block_on(fetch(7)));
    assert_eq!(
        busy,
        Err(format!("busy, held by {:?}", Some(std::process::id())))
    );
}

// ------------------------------------------- Result<impl Trait, E>

#[exclusive("ob-impl", on_busy = |err| Err(ToolError::Busy {
    lock: err.lock_name().unwrap_or_default().to_owned(),
    holder: None,
}))]
fn evens(limit: u32) -> Result<impl Iterator<Item = u32>, ToolError> {
    Ok((0..limit).filter(|n| n % 2 == 0))
}

/// `anyhow::Error: From<lockattr::Error>`: no `on_busy` needed, busy and a
/// setup failure are both `Err`, as for any `Result`.
#[exclusive("ob-impl-anyhow")]
fn odds(limit: u32) -> anyhow::Result<impl Iterator<Item = u32>> {
    Ok((0..limit).filter(|n| n % 2 == 1))
}

#[exclusive("ob-impl-setup", dir = "/nonexistent-lockattr-dir", on_busy = |_| Ok(0..0))]
fn range_setup() -> Result<impl Iterator<Item = u32>, lockattr::Error> {
    Ok(0..3)
}

#[test]
fn result_of_impl_trait() {
    assert_eq!(evens(7).unwrap().collect::<Vec<_>>(), [0, 2, 4, 6]);
    match common::while_held(named("ob-impl"), || evens(7).map(Iterator::count)) {
        Err(ToolError::Busy { lock, .. }) => assert_eq!(lock, "ob-impl"),
        Ok(n) => panic!("busy, yet {n} items"),
    }

    assert_eq!(odds(7).unwrap().collect::<Vec<_>>(), [1, 3, 5]);
    let err =
        common::while_held(named("ob-impl-anyhow"), || odds(7).map(Iterator::count)).unwrap_err();
    let err: &lockattr::Error = err.downcast_ref().expect("a lockattr::Error");
    assert!(err.is_busy(), "{err}");

    // `on_busy` replaces only busy: a setup failure is the `Err` of the
    // return type, not the closure's empty range.
    let err = range_setup().map(Iterator::count).unwrap_err();
    assert!(!err.is_busy(), "{err}");
    assert!(err.to_string().contains(MISSING_DIR), "{err}");
}

// ------------------------------------------- still a value

/// A closure in parentheses is a value like any other `on_busy = EXPR`:
/// the function returns it.
#[exclusive("ob-value", on_busy = (|x| x * 2))]
fn doubler() -> fn(u32) -> u32 {
    |x| x + 1
}

#[test]
fn a_closure_in_parentheses_is_the_value() {
    assert_eq!(doubler()(10), 11);
    let busy = common::while_held(named("ob-value"), doubler);
    assert_eq!(busy(10), 20);
}

// ------------------------------------------------------------ children

/// Runs in a child process started by a test above.
#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    match common::role().as_deref() {
        Some("report") => {
            report();
            println!("RUNS {}", REPORT_RUNS.load(Ordering::SeqCst));
        }
        Some(other) => panic!("unknown role {other:?}"),
        None => return,
    }
    println!("DONE");
}
