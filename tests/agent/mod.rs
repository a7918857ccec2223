//! A lock agent: a child process (this test binary in the role [`ROLE`])
//! that takes and lets go of one lock when the parent tells it to, so a test
//! can put a second or third process exactly where it needs it. It runs
//! under `common::Kid`, whose watchdog kills it should it hang.
//!
//! The agent reads commands from stdin, one a line, and answers each with one
//! line starting with `AGENT ` (libtest prints its own lines around ours):
//!
//! - `lock`, `lock-shared`: `AGENT HELD`, `AGENT BUSY <pid or ?>` or
//!   `AGENT ERR <kind> <message>`;
//! - `unlock`: drops the newest guard, `AGENT UNLOCKED`;
//! - `path`, `lock-path`: `AGENT PATH <file>` from `Lock::path` and
//!   `lockattr::lock_path`;
//! - `umask`: `AGENT UMASK <octal>`, the umask in force.
//!
//! It exits when stdin ends. Its lock is `Lock::new(NAME)` with `.dir(DIR)`
//! when given; `LOCKATTR_TEST_UMASK` sets its umask first.
#![allow(dead_code)] // each test binary uses a different part

use crate::common::{self, Kid};
use lockattr::{Lock, LockName};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ROLE: &str = "agent";
const NAME: &str = "LOCKATTR_TEST_AGENT_NAME";
const DIR: &str = "LOCKATTR_TEST_AGENT_DIR";
const UMASK: &str = "LOCKATTR_TEST_UMASK";

// ------------------------------------------------------------- child side

/// The agent's loop, in the child. Never returns.
pub fn serve() -> ! {
    if let Ok(mask) = std::env::var(UMASK) {
        let mask = u32::from_str_radix(&mask, 8).expect("an octal umask");
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    }
    let name = std::env::var(NAME).expect("the agent's lock name");
    let name = LockName::try_new(common::leak(name.clone())).expect("a valid lock name");
    let mut lock = Lock::new(name);
    if let Ok(dir) = std::env::var(DIR) {
        lock = lock.dir(common::leak(dir));
    }
    let mut guards = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    writeln!(out, "READY").expect("write stdout");
    for line in stdin.lock().lines() {
        let line = line.expect("read stdin");
        let reply = match line.trim() {
            "lock" => take(lock, &mut guards),
            "lock-shared" => take(lock.shared(), &mut guards),
            "unlock" => {
                drop(guards.pop().expect("unlock without a hold"));
                "UNLOCKED".to_owned()
            }
            "path" => format!("PATH {}", lock.path().expect("a path").display()),
            "lock-path" => format!(
                "PATH {}",
                lockattr::lock_path(name.as_str())
                    .expect("a path")
                    .display()
            ),
            "lock-message" => match lock.acquire() {
                Ok(guard) => {
                    guards.push(guard);
                    "HELD".to_owned()
                }
                Err(err) if err.is_busy() => format!("BUSY {err}"),
                Err(err) => describe(&err),
            },
            "proc" if Path::new("/proc/self").exists() => "PROC present".to_owned(),
            "proc" => "PROC absent".to_owned(),
            "umask" => {
                let mask = rustix::process::umask(rustix::fs::Mode::empty());
                rustix::process::umask(mask);
                format!("UMASK {:04o}", mask.bits())
            }
            other => panic!("unknown agent command {other:?}"),
        };
        writeln!(out, "AGENT {reply}").expect("write stdout");
        out.flush().expect("flush stdout");
    }
    std::process::exit(0)
}

fn take(lock: Lock, guards: &mut Vec<lockattr::Guard>) -> String {
    match lock.acquire() {
        Ok(guard) => {
            guards.push(guard);
            "HELD".to_owned()
        }
        Err(err) => describe(&err),
    }
}

/// `BUSY <pid or ?>` or `ERR <kind> <message>`, as one line.
pub fn describe(err: &lockattr::Error) -> String {
    if err.is_busy() {
        match holder_pid(err) {
            Some(pid) => format!("BUSY {pid}"),
            None => "BUSY ?".to_owned(),
        }
    } else {
        format!(
            "ERR {:?} {}",
            err.kind(),
            err.to_string().replace('\n', " ")
        )
    }
}

/// The pid a busy error names, if any.
pub fn holder_pid(err: &lockattr::Error) -> Option<u32> {
    match err.holder()? {
        lockattr::Holder::Process { pid, .. } | lockattr::Holder::ThisProcess { pid } => Some(*pid),
        _ => None,
    }
}

// ------------------------------------------------------------ parent side

// Naming the holder: a busy outcome must name the holder's pid, never a
// wrong one and never none.

/// Asserts that `reply` is busy, held by `pid`.
pub fn assert_busy_by(reply: &Reply, pid: u32, context: &str) {
    match reply {
        Reply::Busy(Some(found)) => {
            assert_eq!(*found, pid, "{context}: busy, but names another holder")
        }
        Reply::Busy(None) if !common::NAMES_OTHER_PROCESSES => {}
        other => panic!("{context}: expected busy, held by pid {pid}; got {other:?}"),
    }
}

/// Asserts that `err` is busy, held by `pid`.
pub fn assert_err_busy_by(err: &lockattr::Error, pid: u32) {
    assert!(err.is_busy(), "expected busy, got: {err}");
    assert_busy_by(&Reply::parse(&describe(err)), pid, &err.to_string());
}

/// What an agent's lock request came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Held,
    /// Busy, with the holder's pid when lockattr could name it.
    Busy(Option<u32>),
    /// A failure: the `ErrorKind` as `Debug`, and the message.
    Err(String, String),
}

impl Reply {
    pub fn parse(line: &str) -> Reply {
        if line == "HELD" {
            return Reply::Held;
        }
        if let Some(pid) = line.strip_prefix("BUSY ") {
            return Reply::Busy(pid.parse().ok());
        }
        if let Some(rest) = line.strip_prefix("ERR ") {
            let (kind, message) = rest.split_once(' ').unwrap_or((rest, ""));
            return Reply::Err(kind.to_owned(), message.to_owned());
        }
        panic!("not a lock reply: {line:?}");
    }

    /// The same reply in this process, for comparison with an agent's.
    pub fn of(result: Result<lockattr::Guard, lockattr::Error>) -> Reply {
        match result {
            Ok(_) => Reply::Held,
            Err(err) => Reply::parse(&describe(&err)),
        }
    }
}

/// A running agent. Dropping it closes the agent's input, and the agent
/// exits as a process does at its end (so its holds go with it).
pub struct Agent {
    kid: Kid,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let status = self.kid.end();
        if !std::thread::panicking() {
            assert!(
                status.success() || status.code().is_none(),
                "the agent failed: {status}"
            );
        }
    }
}

impl Agent {
    /// An agent for lock `name` in `dir` (the default directory when `None`).
    pub fn start(name: &str, dir: Option<&Path>) -> Agent {
        Agent::start_with(name, dir, |_| {})
    }

    /// The same, with `setup` adding environment variables.
    pub fn start_with(name: &str, dir: Option<&Path>, setup: impl FnOnce(&mut Command)) -> Agent {
        let mut cmd = common::spawn_role(ROLE);
        setup(&mut cmd);
        Agent::from_command(cmd, name, dir)
    }

    /// An agent from a command that ends up running this test binary as
    /// [`common::spawn_role`] does (through `unshare`, say).
    pub fn from_command(mut cmd: Command, name: &str, dir: Option<&Path>) -> Agent {
        cmd.env("LOCKATTR_TEST_ROLE", ROLE).env(NAME, name);
        if let Some(dir) = dir {
            cmd.env(DIR, dir);
        }
        let mut kid = Kid::start(cmd);
        kid.expect("READY");
        Agent { kid }
    }

    pub fn pid(&self) -> u32 {
        self.kid.pid()
    }

    /// Sends one command and returns the reply without its `AGENT ` prefix.
    pub fn ask(&mut self, command: &str) -> String {
        self.kid.send(command);
        self.kid.expect("AGENT").0
    }

    pub fn lock(&mut self) -> Reply {
        Reply::parse(&self.ask("lock"))
    }

    pub fn lock_shared(&mut self) -> Reply {
        Reply::parse(&self.ask("lock-shared"))
    }

    pub fn unlock(&mut self) {
        assert_eq!(self.ask("unlock"), "UNLOCKED");
    }

    pub fn path(&mut self, command: &str) -> PathBuf {
        let reply = self.ask(command);
        let path = reply.strip_prefix("PATH ").expect("a PATH reply");
        PathBuf::from(path)
    }

    /// Kills the agent with SIGKILL, so it cannot let go of anything itself.
    pub fn kill(mut self) {
        self.kid.kill();
        assert!(!self.kid.end().success(), "killed");
    }
}

/// A private directory for one test's lock files, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(common::shared_dir(tag))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory as `Lock::dir` takes it.
    pub fn leak(&self) -> &'static str {
        common::leak(self.0.to_str().expect("a UTF-8 temp dir"))
    }

    /// A `Lock` on `NAME.lock` in this directory.
    pub fn lock(&self, name: &str) -> Lock {
        let name = LockName::try_new(common::leak(name)).expect("a valid lock name");
        Lock::new(name).dir(self.leak())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lock in the default directory, by a name known at run time.
pub fn default_lock(name: &str) -> Lock {
    Lock::new(LockName::try_new(common::leak(name)).expect("a valid lock name"))
}
