//! The one thread on which this process's database connections live: a
//! current-thread tokio runtime of lockattr's own. The program's threads
//! (and its own async runtime, if any) hand work to it and wait for the
//! answer, so lockattr works the same in sync code, in `async fn` and under
//! `#[tokio::main]`, and never needs the caller to be inside a runtime.

use crate::process;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use tokio::runtime::Handle;

/// This process's runtime. After `fork()` the parent's runtime thread does
/// not exist in the child: the child makes its own, and never drops (nor
/// uses) the one it inherited.
pub(crate) fn handle() -> Result<Handle, String> {
    static RUNTIME: Mutex<Option<(u32, Handle)>> = Mutex::new(None);
    let pid = process::pid();
    let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, handle)) = &*runtime
        && *owner == pid
    {
        return Ok(handle.clone());
    }
    let built = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start lockattr's database runtime: {err}"))?;
    let handle = built.handle().clone();
    std::thread::Builder::new()
        .name("lockattr-pg".into())
        .spawn(move || built.block_on(std::future::pending::<()>()))
        .map_err(|err| format!("cannot start lockattr's database thread: {err}"))?;
    if let Some(inherited) = runtime.replace((pid, handle.clone())) {
        std::mem::forget(inherited); // the parent's; its thread is not here
    }
    Ok(handle)
}

/// Runs `work` on the database thread and blocks this thread until it is
/// done. Called from an async task's thread, it blocks that thread for as
/// long as `work` takes: lockattr only does so for bounded work (a
/// connection with `connect_timeout`, one round trip), never for a wait.
pub(crate) fn block_on<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle()?.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .map_err(|_| "lockattr's database thread stopped".to_owned())
}

/// Runs `work` on the database thread without waiting for it.
pub(crate) fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = handle() {
        handle.spawn(work);
    }
}
