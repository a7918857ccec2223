//! Lock names from the function's arguments: `#[exclusive("deploy-{env}")]`
//! takes the lock of the value of `env`. Two values run side by side, one
//! value excludes itself; hostile values stay inside the lock directory and
//! never share a file; several names are all taken, in one global order, so
//! two functions naming them in opposite orders never deadlock.

mod common;

use common::Kid;
use lockattr::{LockName, exclusive};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        // Deploys over and over, naming the two locks in one order or the
        // other, for a while.
        "artifacts-first" | "deploy-first" => {
            let env = std::env::var("LOCKATTR_TEST_ENV").unwrap();
            let counter = PathBuf::from(std::env::var("LOCKATTR_TEST_COUNTER").unwrap());
            let rounds: u32 = std::env::var("LOCKATTR_TEST_ROUNDS")
                .unwrap()
                .parse()
                .unwrap();
            println!("READY");
            let _ = std::io::stdin().read_line(&mut String::new()); // start together
            for _ in 0..rounds {
                let counted = match role.as_str() {
                    "artifacts-first" => artifacts_then_deploy(&env, &counter),
                    _ => deploy_then_artifacts(&env, &counter),
                };
                counted.expect("both locks taken");
            }
            println!("DONE");
        }
        other => panic!("unknown role {other:?}"),
    }
}

// ----------------------------------------------------- one value, one lock

#[exclusive("names-deploy-{env}")]
fn deploy(
    env: &str,
    entered: &mpsc::Sender<()>,
    leave: &mpsc::Receiver<()>,
) -> Result<(), lockattr::Error> {
    entered.send(()).unwrap();
    leave.recv_timeout(common::PATIENCE).unwrap();
    Ok(())
}

/// Runs `deploy(env)` on a thread that holds its lock until told to leave.
struct Deploying {
    leave: mpsc::Sender<()>,
    done: std::thread::JoinHandle<Result<(), lockattr::Error>>,
}

fn start_deploy(env: &'static str) -> Deploying {
    let (entered_tx, entered) = mpsc::channel();
    let (leave, leave_rx) = mpsc::channel();
    let done = std::thread::spawn(move || deploy(env, &entered_tx, &leave_rx));
    entered
        .recv_timeout(common::PATIENCE)
        .expect("the deploy entered");
    Deploying { leave, done }
}

impl Deploying {
    fn finish(self) -> Result<(), lockattr::Error> {
        let _ = self.leave.send(());
        self.done.join().unwrap()
    }
}

#[test]
fn two_values_run_side_by_side_and_one_value_excludes_itself() {
    let prod = start_deploy("prod");
    let staging = start_deploy("staging"); // would not enter if it shared prod's lock
    let (tx, rx) = mpsc::channel();
    let (_leave_tx, leave_rx) = mpsc::channel();
    let again = std::thread::spawn(move || deploy("prod", &tx, &leave_rx));
    let err = again.join().unwrap().expect_err("prod is held");
    assert!(rx.try_recv().is_err(), "a second prod deploy entered");
    assert!(err.is_busy(), "{err}");
    assert_eq!(err.lock_name(), Some("names-deploy-prod"));
    common::assert_names_pid(&err.to_string(), std::process::id());
    staging.finish().unwrap();
    prod.finish().unwrap();
}

// ---------------------------------------------------------- hostile values

#[exclusive("names-hostile-{value}")]
fn hostile(value: &OsStr) -> Result<(), lockattr::Error> {
    Ok(())
}

/// The files in the lock directory whose name starts with `prefix`.
fn files(prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir(common::lock_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// `../x`, `/`, `.`, empty, NUL, `_2F` and non-UTF-8 bytes: each value
/// locks one regular file directly in the lock directory, none hidden, and
/// all different.
#[test]
fn hostile_values_stay_in_the_directory_and_never_share_a_file() {
    let values: &[&[u8]] = &[
        b"../x",
        b"/",
        b".",
        b"..",
        b"",
        b"\0",
        b"a/b",
        b"_2F",
        b"\xff\xfe",
        b"-",
        b"x.lock",
    ];
    let before = files("names-hostile-");
    for value in values {
        hostile(OsStr::from_bytes(value)).expect("locked");
    }
    let made: BTreeSet<String> = files("names-hostile-")
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(made.len(), values.len(), "one file per value: {made:?}");
    for name in &made {
        let path = common::lock_dir().join(name);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{name}");
        assert!(!name.starts_with('.'), "hidden: {name}");
        assert!(name.ends_with(".lock"), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{name}"
        );
    }
    // Nothing escaped the directory.
    assert!(!common::lock_dir().parent().unwrap().join("x.lock").exists());
    assert!(made.contains("names-hostile-_2E_2E_2Fx.lock"), "{made:?}");
    assert!(
        made.contains("names-hostile-_.lock"),
        "the empty value: {made:?}"
    );
    assert!(
        made.contains("names-hostile-_FF_FE.lock"),
        "raw bytes: {made:?}"
    );
    assert!(
        made.contains("names-hostile-_5F2F.lock"),
        "`_2F` is not `/`: {made:?}"
    );
}

#[exclusive("names-long-{value}")]
fn long(value: &str) -> Result<(), lockattr::Error> {
    Ok(())
}

/// A name longer than 200 bytes is an error naming the template, never a
/// shortened name (which could make two values meet).
#[test]
fn too_long_a_name_is_an_error() {
    long(&"x".repeat(150)).expect("fits");
    long(&"x".repeat(189)).expect("exactly 200 bytes fit");
    long(&"x".repeat(190)).expect_err("201 bytes");
    let err = long(&"/".repeat(70)).expect_err("210 bytes");
    assert_eq!(err.kind(), lockattr::ErrorKind::Config);
    assert!(err.to_string().contains("names-long-{value}"), "{err}");
    assert!(err.to_string().contains("more than the 200"), "{err}");
}

// ---------------------------------------------- the mapping, and lock_path

/// `LockName::from_template` gives the name the attribute locks, and
/// `lock_path` finds its file for scripts.
#[test]
fn the_run_time_mapping_is_the_attributes() {
    let value = "eu/west 1";
    let name = LockName::from_template("names-deploy-{env}", &[("env", &value)]).unwrap();
    assert_eq!(name.as_str(), "names-deploy-eu_2Fwest_201");
    let path = lockattr::lock_path(name.as_str()).unwrap();
    let (entered_tx, entered) = mpsc::channel();
    let (leave, leave_rx) = mpsc::channel();
    let held = std::thread::spawn(move || deploy(value, &entered_tx, &leave_rx));
    entered.recv_timeout(common::PATIENCE).unwrap();
    let file = std::fs::File::open(&path).expect("the attribute's file");
    assert!(
        file.try_lock().is_err(),
        "the attribute holds the file lock_path names"
    );
    leave.send(()).unwrap();
    held.join().unwrap().unwrap();
    assert!(file.try_lock().is_ok(), "and lets go of it");
}

// -------------------------------------------------------- other parameters

#[derive(Debug)]
enum Region {
    Eu,
    Us,
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Region::Eu => "eu",
            Region::Us => "us",
        })
    }
}

#[exclusive("names-shard-{region}.{shard}")]
fn shard(region: Region, shard: u16) -> Result<String, lockattr::Error> {
    let name = LockName::from_template(
        "names-shard-{region}.{shard}",
        &[("region", &region), ("shard", &shard)],
    )?;
    assert!(
        common::busy_elsewhere(lockattr::Lock::new(name)),
        "the body holds {}",
        name.as_str()
    );
    Ok(name.as_str().to_owned())
}

/// `Display` values (an enum, a number) and two placeholders.
#[test]
fn display_values_and_two_placeholders() {
    assert_eq!(shard(Region::Eu, 7).unwrap(), "names-shard-eu.7");
    assert_eq!(shard(Region::Us, 7).unwrap(), "names-shard-us.7");
}

struct Service {
    env: String,
}

impl Service {
    #[exclusive("names-service-{self.env}")]
    fn restart(&self) -> Result<(), lockattr::Error> {
        let name = LockName::from_template("names-service-{env}", &[("env", &self.env)])?;
        assert!(
            common::busy_elsewhere(lockattr::Lock::new(name)),
            "the body holds {}",
            name.as_str()
        );
        Ok(())
    }
}

#[test]
fn a_field_of_self() {
    Service { env: "prod".into() }.restart().unwrap();
}

// ------------------------------------------------------------ re-entry

#[exclusive("names-nest-{env}")]
fn outer(env: &str, other: &str) -> Result<bool, lockattr::Error> {
    inner(env)?; // the same resolved name: re-enters
    inner(other) // another: its own lock, taken too
}

#[exclusive("names-nest-{env}")]
fn inner(env: &str) -> Result<bool, lockattr::Error> {
    let name = LockName::from_template("names-nest-{env}", &[("env", &env)])?;
    Ok(common::busy_elsewhere(lockattr::Lock::new(name)))
}

#[test]
fn re_entry_is_per_resolved_name() {
    assert!(outer("prod", "staging").unwrap());
}

// ------------------------------------------------------- options and async

#[exclusive("names-wait-{env}", wait = "300ms")]
fn bounded(env: &str) -> Result<(), lockattr::Error> {
    Ok(())
}

#[exclusive("names-shared-{env}", shared)]
fn read(
    env: &str,
    entered: &mpsc::Sender<()>,
    leave: &mpsc::Receiver<()>,
) -> Result<(), lockattr::Error> {
    entered.send(()).unwrap();
    leave.recv_timeout(common::PATIENCE).unwrap();
    Ok(())
}

#[exclusive("names-busy-{env}", on_busy = Some(format!("{env} is busy")))]
fn labelled(env: &str, hold: bool) -> Option<String> {
    if hold {
        labelled(env, false) // re-enters
    } else {
        None
    }
}

#[test]
fn options_apply_to_names_made_at_each_call() {
    // `wait = "300ms"` behind another holder gives up on time.
    let name = LockName::from_template("names-wait-{env}", &[("env", &"prod")]).unwrap();
    let (held_tx, held) = mpsc::channel();
    let (free, free_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = lockattr::Lock::new(name).acquire().unwrap();
        held_tx.send(()).unwrap();
        let _ = free_rx.recv_timeout(common::PATIENCE);
    });
    held.recv().unwrap();
    let start = Instant::now();
    assert!(bounded("prod").unwrap_err().is_busy());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    bounded("staging").expect("another value is free");
    drop(free);
    holder.join().unwrap();

    // `shared`: two readers of one value together.
    let (entered_tx, entered) = mpsc::channel();
    let (leave, leave_rx) = mpsc::channel();
    let (entered_tx2, entered2) = mpsc::channel();
    let (leave2, leave_rx2) = mpsc::channel();
    let a = std::thread::spawn(move || read("prod", &entered_tx, &leave_rx));
    let b = std::thread::spawn(move || read("prod", &entered_tx2, &leave_rx2));
    entered.recv_timeout(common::PATIENCE).expect("reader a");
    entered2
        .recv_timeout(common::PATIENCE)
        .expect("reader b, beside a");
    leave.send(()).unwrap();
    leave2.send(()).unwrap();
    a.join().unwrap().unwrap();
    b.join().unwrap().unwrap();

    // `on_busy` sees the parameters.
    let name = LockName::from_template("names-busy-{env}", &[("env", &"prod")]).unwrap();
    let _guard = lockattr::Lock::new(name).acquire().unwrap();
    let busy = std::thread::spawn(|| labelled("prod", true))
        .join()
        .unwrap();
    assert_eq!(busy.as_deref(), Some("prod is busy"));
}

#[exclusive("names-async-{env}")]
async fn async_deploy(
    env: String,
    step: tokio::sync::oneshot::Receiver<()>,
) -> Result<String, lockattr::Error> {
    let _ = step.await; // the hold lasts across an await
    Ok(env)
}

fn is_send<T: Send>(value: T) -> T {
    value
}

#[test]
fn async_fns_with_placeholders_stay_send_and_hold_across_await() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (go, step) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(is_send(async_deploy("prod".to_owned(), step)));
        let name = LockName::from_template("names-async-{env}", &[("env", &"prod")]).unwrap();
        let start = Instant::now();
        while !tokio::task::spawn_blocking(move || {
            common::busy_elsewhere(lockattr::Lock::new(name))
        })
        .await
        .unwrap()
        {
            assert!(
                start.elapsed() < common::PATIENCE,
                "the task never took its lock"
            );
            tokio::task::yield_now().await;
        }
        go.send(()).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), "prod");
    });
}

// --------------------------------------------------------- several names

#[exclusive("names-artifacts", "names-release-{env}", wait)]
fn artifacts_then_deploy(env: &str, counter: &Path) -> Result<(), lockattr::Error> {
    bump(counter);
    Ok(())
}

#[exclusive("names-release-{env}", "names-artifacts", wait)]
fn deploy_then_artifacts(env: &str, counter: &Path) -> Result<(), lockattr::Error> {
    bump(counter);
    Ok(())
}

/// A read-modify-write that loses updates if two bodies overlap.
fn bump(counter: &Path) {
    let n: u64 = std::fs::read_to_string(counter)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    std::thread::yield_now();
    std::fs::write(counter, format!("{}\n", n + 1)).unwrap();
}

/// Two processes, one naming `artifacts` then `deploy-{env}`, the other
/// the reverse, each waiting for both, many times: they never deadlock
/// (each finishes within the bound) and never overlap (no update lost).
#[test]
fn several_names_in_both_orders_never_deadlock() {
    const ROUNDS: u32 = 2000;
    let dir = common::lock_dir().join(common::unique_name("names-counter"));
    std::fs::create_dir_all(&dir).unwrap();
    let counter = dir.join("counter");
    let start = |role: &str| {
        Kid::role(
            role,
            &[
                ("LOCKATTR_TEST_ENV", "prod"),
                ("LOCKATTR_TEST_COUNTER", counter.to_str().unwrap()),
                ("LOCKATTR_TEST_ROUNDS", &ROUNDS.to_string()),
            ],
        )
    };
    let mut a = start("artifacts-first");
    let mut b = start("deploy-first");
    a.expect("READY");
    b.expect("READY");
    a.send("go");
    b.send("go");
    a.expect_within("DONE", Duration::from_secs(60));
    b.expect_within("DONE", Duration::from_secs(60));
    let total: u32 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, 2 * ROUNDS, "updates lost: the bodies overlapped");
    let _ = std::fs::remove_dir_all(dir);
}

/// All the names are held by the body and let go after it; a name busy
/// elsewhere makes the call busy and leaves the other free.
#[test]
fn several_names_are_all_held_and_all_released() {
    let artifacts = LockName::new("names-all-artifacts");
    let release = LockName::from_template("names-all-{env}", &[("env", &"prod")]).unwrap();
    assert!(both("prod", artifacts, release).unwrap());
    assert!(
        !common::busy_elsewhere(lockattr::Lock::new(artifacts))
            && !common::busy_elsewhere(lockattr::Lock::new(release)),
        "released"
    );

    let held = hold_on_thread(release);
    let err = both("prod", artifacts, release).expect_err("one of them is busy");
    assert!(err.is_busy());
    assert_eq!(err.lock_name(), Some(release.as_str()));
    assert!(
        !common::busy_elsewhere(lockattr::Lock::new(artifacts)),
        "the one taken first was let go"
    );
    drop(held);
}

#[exclusive("names-all-artifacts", "names-all-{env}")]
fn both(env: &str, a: LockName, b: LockName) -> Result<bool, lockattr::Error> {
    Ok(common::busy_elsewhere(lockattr::Lock::new(a))
        && common::busy_elsewhere(lockattr::Lock::new(b)))
}

/// Several names on an `async fn`, sharing one bounded wait, and shared:
/// a name held exclusive elsewhere makes the call busy after the wait
/// (the other name let go meanwhile); free, the body holds both, shared (a
/// shared probe gets in, an exclusive one is busy).
#[test]
fn several_names_on_an_async_fn_share_one_wait_and_may_be_shared() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let first = LockName::new("names-async-first");
    let env = LockName::from_template("names-async-{env}", &[("env", &"prod")]).unwrap();

    let held = hold_on_thread(env);
    let started = std::time::Instant::now();
    let err = runtime
        .block_on(async_both("prod"))
        .expect_err("busy behind the thread");
    let waited = started.elapsed();
    assert!(err.is_busy(), "{err}");
    assert_eq!(err.lock_name(), Some(env.as_str()));
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "gave up after {waited:?}, before its wait of 300 ms"
    );
    assert!(
        !common::busy_elsewhere(lockattr::Lock::new(first)),
        "the name taken first was let go"
    );
    drop(held);

    let (shared_first, shared_env) = runtime.block_on(async_both("prod")).unwrap();
    assert!(shared_first && shared_env, "both held shared by the body");
    assert!(
        !common::busy_elsewhere(lockattr::Lock::new(env)),
        "released"
    );
}

#[exclusive("names-async-first", "names-async-{env}", shared, wait = "300ms")]
async fn async_both(env: &str) -> Result<(bool, bool), lockattr::Error> {
    let held_shared = |name: LockName| {
        let exclusive = common::busy_elsewhere(lockattr::Lock::new(name));
        let shared = common::busy_elsewhere(lockattr::Lock::new(name).shared());
        exclusive && !shared
    };
    let env = LockName::from_template("names-async-{env}", &[("env", &env)])?;
    tokio::task::yield_now().await;
    Ok((
        held_shared(LockName::new("names-async-first")),
        held_shared(env),
    ))
}

/// Holds `name` on another thread until dropped.
fn hold_on_thread(name: LockName) -> mpsc::Sender<()> {
    let (held_tx, held) = mpsc::channel();
    let (stop, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _guard = lockattr::Lock::new(name).acquire().unwrap();
        held_tx.send(()).unwrap();
        let _ = stop_rx.recv();
    });
    held.recv().unwrap();
    stop
}

// ------------------------------------------------ names known at run time

/// A name or a directory from a flag: owned strings, no `Box::leak` for
/// the caller; a bad name's error says which name; the same name twice is
/// the same `&'static str` (kept once for the process).
#[test]
fn names_and_directories_known_at_run_time() {
    let from_flag = String::from("names-flag");
    let name = LockName::parse(&from_flag).unwrap();
    let again = LockName::parse(&from_flag.clone()).unwrap();
    assert!(std::ptr::eq(name.as_str(), again.as_str()), "kept once");

    let err = LockName::parse("deploy/../../etc").unwrap_err();
    assert_eq!(err.kind(), lockattr::ErrorKind::Config);
    assert!(err.to_string().contains("deploy/../../etc"), "{err}");

    let dir: PathBuf = common::lock_dir().join(common::unique_name("flag-dir"));
    std::fs::create_dir(&dir).unwrap();
    let lock = lockattr::Lock::new(name).in_dir(&dir).unwrap();
    let guard = lock.acquire().unwrap();
    assert_eq!(guard.path(), Some(dir.join("names-flag.lock").as_path()));
    drop(guard);

    let file = dir.join("by-flag.lock");
    let by_file = lockattr::Lock::at_file(&file).unwrap();
    assert_eq!(by_file.acquire().unwrap().path(), Some(file.as_path()));

    let relative = lockattr::Lock::at_file("relative.lock").unwrap_err();
    assert_eq!(relative.kind(), lockattr::ErrorKind::Config);
    let relative = lockattr::Lock::new(name).in_dir("locks").unwrap_err();
    assert!(relative.to_string().contains("relative"), "{relative}");
    std::fs::remove_dir_all(dir).unwrap();
}

struct Typed {
    r#type: String,
}

impl Typed {
    #[exclusive("names-typed-{self.r#type}")]
    fn run(&self) -> Result<String, lockattr::Error> {
        Ok(self.r#type.clone())
    }
}

#[exclusive("names-kind-{type}")]
fn kind(r#type: &str) -> Result<&str, lockattr::Error> {
    Ok(r#type)
}

/// A parameter or field named by a keyword (`r#type`): `{type}` and
/// `{self.r#type}` reach it.
#[test]
fn raw_identifiers_in_placeholders() {
    assert_eq!(kind("cron").unwrap(), "cron");
    let typed = Typed {
        r#type: "nightly".into(),
    };
    assert_eq!(typed.run().unwrap(), "nightly");
}
