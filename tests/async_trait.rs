//! `#[exclusive]` on the methods of an `#[async_trait]` impl (and on a
//! provided method of an `#[async_trait]` trait), with the real
//! `async-trait` crate. `#[async_trait]` expands first and turns each
//! `async fn` into a sync fn returning
//! `Pin<Box<dyn Future<Output = R> + Send + 'async_trait>>` whose body is
//! `Box::pin(async move { .. })`; `#[exclusive]` takes the lock inside that
//! future, so it is held from the future's first poll until it completes,
//! and the busy outcome is the one of `R`.
//!
//! Calls go through `dyn Service` and, where it matters, `tokio::spawn`:
//! the futures must stay `Send` (this file compiles only if they are).

mod common;

use async_trait::async_trait;
use lockattr::{Lock, LockName, exclusive};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::sync::oneshot;

fn named(name: &'static str) -> Lock {
    Lock::new(LockName::new(name))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

/// An error type of the user's own, without `From<lockattr::Error>`.
#[derive(Debug, PartialEq)]
enum DeployError {
    Busy(String),
}

/// A step of `Service::hold`: told when the body is inside, and let go of
/// by the test.
struct Gate {
    entered: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

fn gate() -> (Gate, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (entered, entered_rx) = oneshot::channel();
    let (release_tx, release) = oneshot::channel();
    (Gate { entered, release }, entered_rx, release_tx)
}

#[async_trait]
trait Service {
    /// Holds "at-hold" until the gate is released.
    async fn hold(&self, gate: Gate) -> Result<u32, lockattr::Error>;
    /// "at-hold" again, without waiting.
    async fn try_hold(&self) -> Result<u32, lockattr::Error>;
    /// "at-hold" again, waiting for it.
    async fn wait_hold(&self, gate: Gate) -> Result<u32, lockattr::Error>;

    async fn outer(&self) -> Result<Vec<&'static str>, lockattr::Error>;
    async fn inner(&self) -> Result<&'static str, lockattr::Error>;

    async fn parse(&self, text: &str) -> anyhow::Result<u32>;
    async fn announce(&self);
    async fn count(&self, extra: u32) -> u32;
    async fn describe(&self) -> Result<String, DeployError>;
    async fn deploy_to(&self, env: &str) -> Result<String, lockattr::Error>;
    async fn misplaced(&self) -> Result<(), lockattr::Error>;

    /// A provided method under the lock, in the trait itself.
    #[exclusive("at-provided")]
    async fn provided(&self) -> Result<&'static str, lockattr::Error> {
        tokio::task::yield_now().await;
        assert!(common::busy_elsewhere(named("at-provided")));
        Ok("provided")
    }
}

struct Real {
    fallback: u32,
    runs: AtomicU32,
}

#[async_trait]
impl Service for Real {
    #[exclusive("at-hold")]
    async fn hold(&self, gate: Gate) -> Result<u32, lockattr::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        gate.entered.send(()).expect("the test waits for this");
        // Held across this `.await`, however long the test takes.
        gate.release.await.expect("the test lets go");
        assert!(
            common::busy_elsewhere(named("at-hold")),
            "still held after .await"
        );
        Ok(1)
    }

    #[exclusive("at-hold")]
    async fn try_hold(&self) -> Result<u32, lockattr::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(2)
    }

    #[exclusive("at-hold", wait)]
    async fn wait_hold(&self, gate: Gate) -> Result<u32, lockattr::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        gate.entered.send(()).expect("the test waits for this");
        gate.release.await.expect("the test lets go");
        Ok(3)
    }

    #[exclusive("at-nested")]
    async fn outer(&self) -> Result<Vec<&'static str>, lockattr::Error> {
        let mut seen = vec![self.inner().await?];
        seen.push(native_inner().await?);
        seen.push(sync_inner()?);
        // Branches of a join! share the outer hold.
        let (a, b) = tokio::join!(self.inner(), native_inner());
        seen.extend([a?, b?]);
        // A spawned task is another holder: busy, not re-entered.
        let spawned = tokio::spawn(native_inner()).await.expect("the task");
        common::assert_busy_here(&spawned.unwrap_err(), "at-nested");
        Ok(seen)
    }

    #[exclusive("at-nested")]
    async fn inner(&self) -> Result<&'static str, lockattr::Error> {
        tokio::task::yield_now().await;
        Ok("trait")
    }

    #[exclusive("at-parse")]
    async fn parse(&self, text: &str) -> anyhow::Result<u32> {
        if text.is_empty() {
            return Ok(0);
        }
        let n: u32 = text.trim().parse()?;
        tokio::task::yield_now().await;
        Ok(n)
    }

    #[exclusive("at-announce")]
    async fn announce(&self) {
        println!("RAN");
    }

    #[exclusive("at-count", on_busy = self.fallback + extra)]
    async fn count(&self, extra: u32) -> u32 {
        tokio::task::yield_now().await;
        extra
    }

    #[exclusive("at-describe", on_busy = |err| Err(DeployError::Busy(err.to_string())))]
    async fn describe(&self) -> Result<String, DeployError> {
        Ok("described".to_owned())
    }

    #[exclusive("at-deploy-{env}")]
    async fn deploy_to(&self, env: &str) -> Result<String, lockattr::Error> {
        tokio::task::yield_now().await;
        Ok(format!("deployed to {env}"))
    }

    #[exclusive("at-misplaced", dir = "/nonexistent-lockattr-dir")]
    async fn misplaced(&self) -> Result<(), lockattr::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[exclusive("at-nested")]
async fn native_inner() -> Result<&'static str, lockattr::Error> {
    tokio::task::yield_now().await;
    Ok("native")
}

#[exclusive("at-nested")]
fn sync_inner() -> Result<&'static str, lockattr::Error> {
    Ok("sync")
}

fn service() -> Arc<dyn Service + Send + Sync> {
    Arc::new(Real {
        fallback: 100,
        runs: AtomicU32::new(0),
    })
}

/// Polls `fut` once, outside any task, with a waker that does nothing.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn held_from_first_poll_to_completion_across_await() {
    let rt = runtime();
    let svc = service();
    // Calling the method only makes the future: the lock is taken when the
    // future runs, so this one, polled once another call holds, is busy.
    let early = svc.try_hold();
    assert!(
        !common::busy_elsewhere(named("at-hold")),
        "calling takes nothing"
    );

    let (gate_a, entered_a, release_a) = gate();
    let first = rt.spawn({
        let svc = svc.clone();
        async move { svc.hold(gate_a).await }
    });
    rt.block_on(entered_a).expect("the first call is inside");
    assert!(
        common::busy_elsewhere(named("at-hold")),
        "held while the body awaits"
    );
    common::assert_busy_here(&rt.block_on(early).unwrap_err(), "at-hold");

    // Another task, through `dyn Service`, is another holder: busy.
    let other = rt.spawn({
        let svc = svc.clone();
        async move { svc.try_hold().await }
    });
    common::assert_busy_here(
        &rt.block_on(other).expect("the task").unwrap_err(),
        "at-hold",
    );

    // A call with `wait` waits for the first to complete.
    let (gate_b, mut entered_b, release_b) = gate();
    let mut second = Box::pin({
        let svc = svc.clone();
        async move { svc.wait_hold(gate_b).await }
    });
    assert!(poll_once(&mut second).is_pending(), "waits while held");
    assert!(
        entered_b.try_recv().is_err(),
        "the second body does not run while the first holds the lock"
    );

    release_a.send(()).expect("the first call waits for this");
    assert_eq!(rt.block_on(first).expect("the task").unwrap(), 1);
    let second = rt.spawn(second);
    rt.block_on(entered_b)
        .expect("the second call got in once free");
    release_b.send(()).expect("the second call waits for this");
    assert_eq!(rt.block_on(second).expect("the task").unwrap(), 3);
    assert!(
        !common::busy_elsewhere(named("at-hold")),
        "let go after completion"
    );

    assert_eq!(rt.block_on(svc.try_hold()).unwrap(), 2, "free again");
}

#[test]
fn nested_calls_in_the_same_task_reenter() {
    let rt = runtime();
    let svc = service();
    let seen = rt
        .block_on(rt.spawn(async move { svc.outer().await }))
        .expect("the task")
        .expect("every nested call re-entered");
    assert_eq!(seen, ["trait", "native", "sync", "trait", "native"]);
    assert!(!common::busy_elsewhere(named("at-nested")));
}

#[test]
fn return_and_question_mark_keep_their_meaning() {
    let rt = runtime();
    let svc = service();
    assert_eq!(rt.block_on(svc.parse("")).unwrap(), 0, "early return");
    assert!(
        !common::busy_elsewhere(named("at-parse")),
        "let go after `return`"
    );
    assert_eq!(rt.block_on(svc.parse(" 12 ")).unwrap(), 12);
    let err = rt.block_on(svc.parse("twelve")).unwrap_err();
    assert!(
        err.downcast_ref::<std::num::ParseIntError>().is_some(),
        "the body's own error, untouched: {err:?}"
    );
    assert!(
        !common::busy_elsewhere(named("at-parse")),
        "let go after `?`"
    );
}

#[test]
fn busy_outcome_follows_the_futures_output() {
    let rt = runtime();
    let svc: Box<dyn Service + Send + Sync> = Box::new(Real {
        fallback: 100,
        runs: AtomicU32::new(0),
    });
    assert_eq!(rt.block_on(svc.count(1)), 1);
    assert_eq!(rt.block_on(svc.describe()).unwrap(), "described");
    assert_eq!(rt.block_on(svc.provided()).unwrap(), "provided");

    let count = common::while_held(named("at-count"), || rt.block_on(svc.count(1)));
    assert_eq!(count, 101, "on_busy used self and the parameter");

    let described = common::while_held(named("at-describe"), || rt.block_on(svc.describe()));
    match described {
        Err(DeployError::Busy(text)) => assert!(text.contains("at-describe"), "{text}"),
        other => panic!("expected the closure's error, got {other:?}"),
    }

    let err = common::while_held(named("at-provided"), || rt.block_on(svc.provided()));
    common::assert_busy_here(&err.unwrap_err(), "at-provided");

    let err = common::while_held(named("at-parse"), || rt.block_on(svc.parse("1")));
    common::assert_busy_here(
        err.unwrap_err().downcast_ref().expect("a lockattr::Error"),
        "at-parse",
    );
}

#[test]
fn names_from_arguments() {
    let rt = runtime();
    let svc = service();
    let prod = LockName::from_template("at-deploy-{env}", &[("env", &"prod")]).unwrap();
    let deployed = common::while_held(Lock::new(prod), || {
        let staging = rt.block_on(rt.spawn({
            let svc = svc.clone();
            async move { svc.deploy_to("staging").await }
        }));
        assert_eq!(staging.expect("the task").unwrap(), "deployed to staging");
        rt.block_on(svc.deploy_to("prod"))
    });
    common::assert_busy_here(&deployed.unwrap_err(), prod.as_str());
}

#[test]
fn setup_error_is_the_outputs_err_never_busy() {
    let rt = runtime();
    let real = Real {
        fallback: 0,
        runs: AtomicU32::new(0),
    };
    let err = rt.block_on(real.misplaced()).unwrap_err();
    assert!(!err.is_busy(), "{err}");
    assert_eq!(err.kind(), lockattr::ErrorKind::Io, "{err}");
    assert_eq!(real.runs.load(Ordering::SeqCst), 0, "the body did not run");
}

// ------------------------------------------------------------ ?Send

#[async_trait(?Send)]
trait Local {
    async fn run(&self) -> Result<usize, lockattr::Error>;
}

struct OnOneThread;

#[async_trait(?Send)]
impl Local for OnOneThread {
    #[exclusive("at-local")]
    async fn run(&self) -> Result<usize, lockattr::Error> {
        let shared = std::rc::Rc::new(7); // not Send, kept across .await
        tokio::task::yield_now().await;
        assert!(common::busy_elsewhere(named("at-local")));
        Ok(*shared)
    }
}

#[test]
fn without_send() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local: Box<dyn Local> = Box::new(OnOneThread);
    assert_eq!(rt.block_on(local.run()).unwrap(), 7);
    let err = common::while_held(named("at-local"), || rt.block_on(local.run()));
    common::assert_busy_here(&err.unwrap_err(), "at-local");
}

// ------------------------------------------------------------ children

/// A `()` output prints the busy line, as a `()` function does.
#[test]
fn unit_output_prints_the_busy_line() {
    let out = common::while_held(named("at-announce"), || {
        common::output(common::spawn_role("announce"))
    });
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "DONE"), "{stdout}");
    assert!(!stdout.lines().any(|l| l == "RAN"), "busy: the body ran");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("at-announce"))
        .collect();
    assert_eq!(lines.len(), 1, "one line about the lock; stderr: {stderr}");
    assert!(lines[0].contains("busy"), "{}", lines[0]);
    common::assert_names_pid(lines[0], std::process::id());
}

/// Runs in a child process started by a test above.
#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    match common::role().as_deref() {
        Some("announce") => runtime().block_on(service().announce()),
        Some(other) => panic!("unknown role {other:?}"),
        None => return,
    }
    println!("DONE");
}
