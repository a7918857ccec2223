//! Shared by the behaviour tests: re-running this test binary as a child
//! process in a named role, unique lock names, and loud skips.
//!
//! A test file that needs children defines one ignored test named `child`
//! that dispatches on [`role()`]; [`spawn_role`] starts
//! `current_exe() --exact child --ignored` with the role in the environment.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "LOCKATTR_TEST_ROLE";

/// The role this process was started in, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A command that re-runs this test binary as a child in `role`. Add
/// `.env(...)` for its arguments; its stdout is piped.
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
    .env(ROLE, role)
    .stdout(Stdio::piped());
    cmd
}

/// Reads the child's stdout until a line equal to `marker` (libtest prints
/// its own lines around ours). Panics if the child ends first or after 30s.
pub fn wait_for_line(out: &mut BufReader<ChildStdout>, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read the child's stdout");
        assert!(n > 0, "the child ended before printing {marker:?}");
        if line.trim_end() == marker {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {marker:?} from the child within 30s"
        );
    }
}

/// Starts a child in `role` and waits until it prints `READY`.
pub fn start_ready(mut cmd: Command) -> (Child, BufReader<ChildStdout>) {
    let mut child = cmd.spawn().expect("spawn the child");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    wait_for_line(&mut out, "READY");
    (child, out)
}

/// A lock name no other test (or earlier run) uses.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under /tmp, world-writable and sticky like /tmp
/// itself, so that several users can share it.
pub fn shared_dir(tag: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(unique_name(tag));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    dir
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
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        loud(&format!(
            "SKIPPED {test}: `{command}` is not installed; .ci/run installs it"
        ));
    }
    found
}

/// Writes straight to stderr: libtest captures `eprintln!` of passing
/// tests, but not writes to the stderr handle itself.
fn loud(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}
