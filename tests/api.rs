//! The API people reach for next (issue 10): looking at a lock without
//! taking it (`Lock::holders`), hand-written async locking
//! (`Lock::acquire_async`, `AsyncGuard::scope`), lending a hold to threads
//! (`lockattr::lend`), and where lockattr's own lines go (`set_messages`,
//! tracing events, one notice per lock, said by the waiting thread).

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use common::Kid;
use lockattr::{ErrorKind, Holder, Lock, LockName, Message, Messages, exclusive};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NAME: &str = "LOCKATTR_TEST_NAME";

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        agent::ROLE => agent::serve(),
        // A `()` function, busy, with messages silenced.
        "silent" => {
            lockattr::set_messages(Messages::Silent);
            unit_tool(&which());
            println!("RETURNED");
        }
        // A `()` function, busy, with messages taken by the program.
        "custom" => {
            lockattr::set_messages(Messages::To(custom));
            unit_tool(&which());
            println!("RETURNED");
        }
        // A `()` function, busy, under a tracing subscriber.
        #[cfg(feature = "tracing")]
        "tracing" => {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(std::io::stdout)
                .with_ansi(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || unit_tool(&which()));
            println!("RETURNED");
        }
        // 30 threads wait for one lock for up to 10 s.
        "many-waiters" => {
            let threads: Vec<_> = (0..30)
                .map(|_| std::thread::spawn(|| many_waiters().map(drop)))
                .collect();
            println!("WAITING");
            for thread in threads {
                thread.join().unwrap().expect("got the lock in the end");
            }
            println!("ALL DONE");
        }
        other => panic!("unknown role {other:?}"),
    }
}

fn custom(message: &Message<'_>) {
    if let Message::NotRunning { error } = message {
        let pid = error.holder().and_then(Holder::pid);
        println!(
            "CUSTOM busy {} holder {pid:?}",
            error.lock_name().unwrap_or("?")
        );
    }
}

/// One lock per test that uses it (`which`), so that those tests can run
/// at once.
#[exclusive("api-unit-{which}")]
fn unit_tool(which: &str) {
    println!("RAN");
}

fn which() -> String {
    std::env::var("LOCKATTR_TEST_WHICH").expect("LOCKATTR_TEST_WHICH")
}

#[exclusive("api-many", wait = "10s")]
fn many_waiters() -> Result<(), lockattr::Error> {
    Ok(())
}

// ------------------------------------------------- looking without taking

/// `Lock::holders`: empty and no file made when nobody holds it; the
/// holder's pid, command and user when another process does; every shared
/// holder; this process as `ThisProcess`. Never a descriptor of its own on
/// the file, and the holder keeps its lock.
#[test]
fn holders_are_seen_without_taking_the_lock() {
    let dir = TempDir::new("holders");
    let lock = dir.lock("status");
    let path = lock.path().unwrap();
    assert!(
        lock.holders().unwrap().is_empty(),
        "no file: nobody holds it"
    );
    assert!(!path.exists(), "looking made the file");

    let mut a = Agent::start("status", Some(dir.path()));
    assert_eq!(a.lock(), Reply::Held);
    if !common::NAMES_OTHER_PROCESSES {
        let err = lock.holders().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        return;
    }
    let holders = lock.holders().unwrap();
    match holders.as_slice() {
        [
            Holder::Process {
                pid,
                command,
                uid,
                user,
                ..
            },
        ] => {
            assert_eq!(*pid, a.pid());
            assert!(
                command.as_deref().is_some_and(|c| !c.is_empty()),
                "{command:?}"
            );
            assert_eq!(*uid, Some(rustix::process::getuid().as_raw()));
            assert!(user.is_some(), "a user name for uid {uid:?}");
        }
        other => panic!("expected the agent, got {other:?}"),
    }
    assert!(holders[0].to_string().contains(&format!("pid {}", a.pid())));
    assert_eq!(
        common::descriptors_on(&path),
        0,
        "looking opened the lock file"
    );
    let mut other = Agent::start("status", Some(dir.path()));
    agent::assert_busy_by(&other.lock(), a.pid(), "the agent still holds it");
    a.unlock();

    assert_eq!(a.lock_shared(), Reply::Held);
    assert_eq!(other.lock_shared(), Reply::Held);
    let mut pids: Vec<u32> = lock
        .holders()
        .unwrap()
        .iter()
        .filter_map(Holder::pid)
        .collect();
    pids.sort();
    let mut want = vec![a.pid(), other.pid()];
    want.sort();
    assert_eq!(pids, want, "both shared holders");
    a.unlock();
    other.unlock();

    let guard = lock.acquire().unwrap();
    assert_eq!(
        lock.holders().unwrap(),
        vec![Holder::ThisProcess {
            pid: std::process::id()
        }]
    );
    drop(guard);
    assert!(lock.holders().unwrap().is_empty());
}

// ------------------------------------------------------ hand-written async

const ASYNC: Lock = Lock::new(LockName::new("api-async"));

#[exclusive("api-async", wait)]
async fn nested_step() -> Result<u32, lockattr::Error> {
    Ok(1)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `acquire_async`: a `Send` guard held across `.await` in a spawned task,
/// other tasks busy meanwhile, nested calls re-entering inside `scope`.
#[test]
fn an_async_guard_is_held_across_await_in_a_spawned_task() {
    runtime().block_on(async {
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let (go, wait_go) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let guard = ASYNC.acquire_async().await?;
            held_tx.send(()).unwrap();
            let _ = wait_go.await; // held across an await, on any worker
            let nested = guard.scope(nested_step()).await?;
            Ok::<_, lockattr::Error>(nested)
        });
        held.await.unwrap();
        let err = ASYNC.acquire_async().await.expect_err("another task: busy");
        common::assert_busy_here(&err, "api-async");
        go.send(()).unwrap();
        assert_eq!(
            task.await.unwrap().unwrap(),
            1,
            "the nested call re-entered"
        );
        let again = ASYNC.acquire_async().await;
        drop(again.expect("released with the guard"));
    });
}

/// Dropping a waiting `acquire_async` (a timeout) withdraws: once the
/// holder lets go, the lock is free for others, not kept for nobody.
#[test]
fn a_cancelled_async_acquisition_keeps_nothing() {
    const LOCK: Lock = Lock::new(LockName::new("api-cancel")).wait();
    runtime().block_on(async {
        let holder = LOCK.acquire_async().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(100), LOCK.acquire_async()).await;
        assert!(waited.is_err(), "the wait was cancelled by the timeout");
        drop(holder);
        let start = Instant::now();
        loop {
            match tokio::task::spawn_blocking(|| LOCK.holders())
                .await
                .unwrap()
            {
                Ok(holders) if holders.is_empty() => break,
                Err(err) if err.kind() == ErrorKind::Unsupported => break,
                other => assert!(start.elapsed() < common::PATIENCE, "still held: {other:?}"),
            }
            tokio::task::yield_now().await;
        }
        let other =
            std::thread::spawn(|| Lock::new(LockName::new("api-cancel")).acquire().map(drop));
        other.join().unwrap().expect("free for another holder");
    });
}

// ------------------------------------------------------- lending a hold

#[exclusive("api-build")]
fn build(lend: bool) -> Result<Vec<Result<(), lockattr::Error>>, lockattr::Error> {
    let lent = lockattr::lend();
    std::thread::scope(|scope| {
        let steps: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || match lend {
                    true => lent.run(step),
                    false => step(),
                })
            })
            .collect();
        Ok(steps.into_iter().map(|step| step.join().unwrap()).collect())
    })
}

#[exclusive("api-build")]
fn step() -> Result<(), lockattr::Error> {
    Ok(())
}

/// Threads a holder starts in `thread::scope`: lent the hold, their
/// `#[exclusive]` calls re-enter; without it, they find the lock busy
/// (silently skipped with `()`, or a deadlock with `wait`).
#[test]
fn a_hold_lent_to_scoped_threads_re_enters() {
    let lent = build(true).unwrap();
    assert_eq!(lent.len(), 4);
    for (i, step) in lent.into_iter().enumerate() {
        step.unwrap_or_else(|err| panic!("step {i}, lent the hold: {err}"));
    }
    let unlent = build(false).unwrap();
    assert_eq!(unlent.len(), 4);
    for (i, step) in unlent.into_iter().enumerate() {
        let err = step.expect_err("a step not lent the hold: busy");
        assert!(err.is_busy(), "step {i}: {err}");
        common::assert_busy_here(&err, "api-build");
    }
}

// ------------------------------------------------------------- messages

/// A child in `role` (`silent`, `custom`, `tracing`), its lock its own.
fn role(role: &str) -> std::process::Command {
    let mut cmd = common::spawn_role(role);
    cmd.env("LOCKATTR_TEST_WHICH", role);
    cmd
}

fn held_by_an_agent(name: &str) -> Agent {
    let mut agent = Agent::start(name, Some(common::lock_dir()));
    assert_eq!(agent.lock(), Reply::Held);
    agent
}

/// `Messages::Silent`: a busy `()` function returns without a word.
#[test]
fn messages_can_be_silenced() {
    let _holder = held_by_an_agent("api-unit-silent");
    let out = common::output(role("silent"));
    assert!(
        out.stdout.contains("RETURNED") && !out.stdout.contains("RAN"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("api-unit"),
        "said something: {}",
        out.stderr
    );
}

/// `Messages::To`: the program gets the message, with the error inside.
#[test]
fn messages_can_be_taken_by_the_program() {
    let holder = held_by_an_agent("api-unit-custom");
    let out = common::output(role("custom"));
    let line = format!("CUSTOM busy api-unit-custom holder Some({})", holder.pid());
    let unknown = "CUSTOM busy api-unit-custom holder None";
    let named = out.stdout.contains(&line)
        || (!common::NAMES_OTHER_PROCESSES && out.stdout.contains(unknown));
    assert!(named, "{out:?}");
    assert!(
        !out.stderr.contains("api-unit"),
        "also on stderr: {}",
        out.stderr
    );
}

/// Feature `tracing`: under a subscriber, the busy line is an event of
/// target `lockattr` with the lock, the file and the holder as fields.
#[cfg(feature = "tracing")]
#[test]
fn messages_are_tracing_events_under_a_subscriber() {
    let holder = held_by_an_agent("api-unit-tracing");
    let out = common::output(role("tracing"));
    let event = out.stdout.lines().find(|line| line.contains("lockattr:"));
    let event = event.unwrap_or_else(|| panic!("no event: {out:?}"));
    assert!(event.contains("WARN"), "{event}");
    assert!(event.contains("lock=\"api-unit-tracing\""), "{event}");
    assert!(event.contains("file="), "{event}");
    if common::NAMES_OTHER_PROCESSES {
        assert!(
            event.contains(&format!("holder_pid={}", holder.pid())),
            "{event}"
        );
    }
    assert!(
        !out.stderr.contains("not running"),
        "also on stderr: {}",
        out.stderr
    );
}

/// 30 threads waiting for one lock: one notice for the process, not one
/// per waiter; they all run once the holder lets go.
#[test]
fn one_notice_per_lock_per_process() {
    let mut holder = held_by_an_agent("api-many");
    let mut kid = Kid::role("many-waiters", &[(NAME, "api-many")]);
    kid.expect("WAITING");
    let (notice, _) = kid.expect_stderr("waiting for lock \"api-many\"");
    common::assert_names_pid(&notice, holder.pid());
    holder.unlock();
    kid.expect("ALL DONE");
    let finished = kid.finish();
    let notices = finished
        .stderr
        .lines()
        .filter(|l| l.contains("waiting for lock"))
        .count();
    assert_eq!(notices, 1, "{}", finished.stderr);
}

/// The notice is said by the waiting thread itself (so that a test's
/// captured output, or a scoped tracing subscriber, gets it), not by a
/// thread of lockattr's.
#[test]
fn the_notice_comes_from_the_waiting_thread() {
    static SAID_ON: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    fn record(message: &Message<'_>) {
        if let Message::Waiting { .. } = message {
            let thread = std::thread::current().name().map(str::to_owned);
            *SAID_ON.lock().unwrap() = thread;
        }
    }
    // This process: other tests' messages keep going to stderr meanwhile.
    lockattr::set_messages(Messages::To(record));
    const LOCK: Lock = Lock::new(LockName::new("api-notice")).wait_for(Duration::from_secs(20));
    let holder = held_by_an_agent("api-notice");
    let (done_tx, done) = mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("the-waiter".into())
        .spawn(move || done_tx.send(LOCK.acquire().map(drop)).unwrap())
        .unwrap();
    let start = Instant::now();
    while SAID_ON.lock().unwrap().is_none() {
        assert!(start.elapsed() < common::PATIENCE, "no notice");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(holder);
    done.recv().unwrap().expect("the waiter got the lock");
    waiter.join().unwrap();
    lockattr::set_messages(Messages::Stderr);
    assert_eq!(SAID_ON.lock().unwrap().as_deref(), Some("the-waiter"));
}
