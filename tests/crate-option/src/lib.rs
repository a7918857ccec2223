//! Tests of `#[exclusive(crate = "...")]`. This package depends on lockattr
//! under another name, `tool_lock`, so `::lockattr` does not resolve here:
//! every expansion below compiles only because it uses the `crate` path.

#[cfg(test)]
mod tests {
    use std::sync::{OnceLock, mpsc};
    use std::thread;
    use tool_lock::__private::TestDir;
    use tool_lock::{Lock, LockName};

    // As in the root package's tests (tests/common): this test process
    // locks in a directory of its own, pinned before `main` and removed at
    // exit, so that no other run or lock holder on the host can meet it.
    #[used]
    #[cfg_attr(
        target_vendor = "apple",
        unsafe(link_section = "__DATA,__mod_init_func")
    )]
    #[cfg_attr(not(target_vendor = "apple"), unsafe(link_section = ".init_array"))]
    static PIN_LOCK_DIR: extern "C" fn() = pin_lock_dir;

    static DIR: OnceLock<TestDir> = OnceLock::new();

    extern "C" fn pin_lock_dir() {
        let dir = DIR.get_or_init(TestDir::new);
        if let Err(err) = tool_lock::set_default_dir(dir.path()) {
            panic!("pin the test's lock directory: {err}");
        }
        // SAFETY: registers a function that takes nothing and returns.
        unsafe { libc::atexit(remove_lock_dir) };
    }

    extern "C" fn remove_lock_dir() {
        if let Some(dir) = DIR.get() {
            dir.remove();
        }
    }

    #[test]
    fn locks_in_its_own_directory() {
        let path = CRATE_OPT.path().unwrap();
        assert_eq!(path.parent(), DIR.get().map(TestDir::path));
    }

    /// A re-export, as a tool that wraps lockattr in its own crate has.
    mod reexport {
        pub use tool_lock as inner;
    }

    /// Holds `lock` on another thread until the returned sender is dropped.
    fn hold(lock: Lock) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let guard = lock.acquire().expect("the holder thread takes the lock");
            ready_tx.send(()).expect("tell the test");
            let _ = stop_rx.recv();
            drop(guard);
        });
        ready_rx.recv().expect("the holder thread took the lock");
        (stop_tx, thread)
    }

    fn busy_elsewhere(lock: Lock) -> bool {
        thread::spawn(move || match lock.acquire() {
            Ok(_guard) => false,
            Err(err) if err.is_busy() => true,
            Err(err) => panic!("probing the lock failed: {err}"),
        })
        .join()
        .expect("the probing thread")
    }

    const CRATE_OPT: Lock = Lock::new(LockName::new("crate-opt"));

    #[tool_lock::exclusive("crate-opt", crate = "tool_lock")]
    fn renamed() -> Result<u32, tool_lock::Error> {
        assert!(busy_elsewhere(CRATE_OPT), "the body runs under the lock");
        Ok(1)
    }

    #[test]
    fn renamed_crate_runs_and_reports_busy() {
        assert_eq!(renamed().unwrap(), 1);
        assert!(!busy_elsewhere(CRATE_OPT), "released on return");

        let (stop, holder) = hold(CRATE_OPT);
        let err = renamed().unwrap_err();
        drop(stop);
        holder.join().unwrap();
        assert!(err.is_busy(), "{err}");
        assert_eq!(err.lock_name(), Some("crate-opt"));
    }

    const REEXPORT: LockName = LockName::new("crate-opt-reexport");

    /// A `const` name, `on_busy` and a nameable return type: the expansion's
    /// type checks go through the `crate` path too.
    #[reexport::inner::exclusive(REEXPORT, crate = "crate::tests::reexport::inner", on_busy = 0)]
    fn through_reexport() -> u32 {
        assert!(busy_elsewhere(Lock::new(REEXPORT)));
        2
    }

    #[test]
    fn reexported_crate_runs_and_reports_busy() {
        assert_eq!(through_reexport(), 2);
        let (stop, holder) = hold(Lock::new(REEXPORT));
        let busy = through_reexport();
        drop(stop);
        holder.join().unwrap();
        assert_eq!(busy, 0, "on_busy");
    }

    #[tool_lock::exclusive("crate-opt-setup", crate = "tool_lock", dir = "/nonexistent-lockattr-dir", on_busy = Ok(0))]
    fn setup_fails() -> Result<u32, tool_lock::Error> {
        Ok(3)
    }

    #[test]
    fn setup_error_with_on_busy_is_err() {
        let err = setup_fails().unwrap_err();
        assert!(!err.is_busy(), "{err}");
        assert_eq!(err.kind(), tool_lock::ErrorKind::Io, "{err}");
    }

    #[tool_lock::exclusive("crate-opt-async", crate = "tool_lock")]
    async fn in_async() -> Result<u32, tool_lock::Error> {
        assert!(busy_elsewhere(Lock::new(LockName::new("crate-opt-async"))));
        Ok(4)
    }

    /// Polls a future that never waits (a lock taken without `wait` and a
    /// body without `.await`) to its end.
    fn run_now<F: std::future::Future>(future: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn async_fn_runs_and_reports_busy() {
        assert_eq!(run_now(in_async()).unwrap(), 4);
        let (stop, holder) = hold(Lock::new(LockName::new("crate-opt-async")));
        let err = run_now(in_async()).unwrap_err();
        drop(stop);
        holder.join().unwrap();
        assert!(err.is_busy(), "{err}");
    }
}
