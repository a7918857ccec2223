//! A return type that the body can name is judged by what it is, not by
//! its name: the user's own types called `Future` or `BoxFuture` are plain
//! values, and the functions returning them run under the lock. (Real
//! futures are refused at compile time: `ui-tests/sync-fn-returning-*`.)

mod common; // the run's own lock directory

use lockattr::{Lock, LockName, exclusive};
use std::sync::mpsc;
use std::thread;

/// A build's state, in a tool that happens to call it `Future`.
#[derive(Debug, PartialEq)]
struct Future {
    ready: bool,
}

mod jobs {
    /// Another name that futures libraries use, for a plain value.
    #[derive(Debug, PartialEq)]
    pub struct BoxFuture(pub u32);
}

/// Holds the lock on another thread until the sender is dropped.
fn hold(name: &'static str) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let guard = Lock::new(LockName::new(name))
            .acquire()
            .expect("hold the lock");
        ready_tx.send(()).expect("tell the test");
        let _ = stop_rx.recv();
        drop(guard);
    });
    ready_rx.recv().expect("the holder took the lock");
    (stop_tx, holder)
}

#[exclusive("future-named-type")]
fn status() -> Result<Future, lockattr::Error> {
    assert!(
        common::busy_elsewhere(Lock::new(LockName::new("future-named-type"))),
        "runs under the lock"
    );
    Ok(Future { ready: true })
}

#[exclusive("future-named-box", on_busy = jobs::BoxFuture(0))]
fn job() -> jobs::BoxFuture {
    assert!(
        common::busy_elsewhere(Lock::new(LockName::new("future-named-box"))),
        "runs under the lock"
    );
    jobs::BoxFuture(7)
}

#[test]
fn a_user_type_named_future_is_a_value() {
    assert_eq!(status().unwrap(), Future { ready: true });
    assert_eq!(job(), jobs::BoxFuture(7));

    let (stop, holder) = hold("future-named-type");
    let err = status().unwrap_err();
    drop(stop);
    holder.join().unwrap();
    assert!(err.is_busy(), "{err}");

    let (stop, holder) = hold("future-named-box");
    assert_eq!(job(), jobs::BoxFuture(0), "on_busy");
    drop(stop);
    holder.join().unwrap();
}
