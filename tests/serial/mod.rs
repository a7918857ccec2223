//! Shared by `serial_a.rs` and `serial_b.rs`, two test binaries whose
//! `#[test]` functions take one lock without `wait`: what a test does under
//! the lock, and the driver (in `serial_a`) that runs a test of each binary
//! at the same time, in two processes, and checks that they took turns.
#![allow(dead_code)] // serial_b uses only the body

use crate::common::{self, Finished, Kid};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The journal file each test appends its `enter` and `exit` lines to.
const JOURNAL: &str = "LOCKATTR_SERIAL_JOURNAL";

/// The lock every test here takes: `serial-db.lock` in `LOCKATTR_DIR`.
pub const LOCK: &str = "serial-db";

/// How long the driver waits for any one event before it gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// What each test does while it holds the lock: journal its entry, say so
/// on stdout, wait until its stdin closes, journal its exit. Run by hand
/// (without the driver's environment), it does nothing.
pub fn body(test: &str) {
    let Some(journal) = std::env::var_os(JOURNAL) else {
        return;
    };
    note(&journal, &format!("enter {test}"));
    println!("ENTERED {test}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    note(&journal, &format!("exit {test}"));
}

/// One line, one write(2), `O_APPEND`: lines of two processes never mix.
fn note(journal: &OsStr, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(journal)
        .expect("open the journal");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("write the journal");
}

/// A test function in a test binary.
#[derive(Clone, Copy)]
pub struct Test<'a> {
    binary: &'a Path,
    /// Which crate it is in, for the journal (`serial_b`).
    krate: &'a str,
    /// As libtest names it (`nested::test_above`).
    name: &'a str,
}

impl<'a> Test<'a> {
    pub fn new(binary: &'a Path, krate: &'a str, name: &'a str) -> Test<'a> {
        Test {
            binary,
            krate,
            name,
        }
    }

    fn journal_name(&self) -> String {
        format!("{}::{}", self.krate, self.name)
    }

    fn start(&self, dir: &Path, one_thread: bool) -> Kid {
        let mut cmd = Command::new(self.binary);
        cmd.args(["--exact", self.name, "--ignored", "--nocapture", "-q"]);
        if one_thread {
            cmd.arg("--test-threads=1");
        }
        cmd.env("LOCKATTR_DIR", dir)
            .env(JOURNAL, dir.join("journal"));
        Kid::start(cmd)
    }
}

/// The test binary `name` next to this one (`target/*/deps/NAME-HASH`),
/// built from `sources` (relative to the package) and the lockattr crates.
/// Several may be there, left by builds with other flags: the newest is the
/// one this `cargo test` built. `Err` says why there is none to trust: not
/// built, or older than a source, as after `cargo test --test serial_a`
/// alone rebuilt only this binary.
pub fn sibling(name: &str, sources: &[&str]) -> Result<PathBuf, String> {
    let me = std::env::current_exe().expect("this test binary's path");
    let deps = me.parent().expect("the binary's directory");
    let prefix = format!("{name}-");
    let binary = std::fs::read_dir(deps)
        .expect("list the binary's directory")
        .filter_map(Result::ok)
        .filter(|entry| {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            file.starts_with(&prefix)
                && !file.contains('.')
                && entry
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .map(|entry| entry.path())
        .ok_or_else(|| format!("the test binary {name} is not built"))?;
    let built = modified(&binary);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs: Vec<PathBuf> = sources.iter().map(|source| root.join(source)).collect();
    for krate in ["lockattr", "lockattr-macros"] {
        inputs.push(root.join(krate).join("Cargo.toml"));
        let src =
            std::fs::read_dir(root.join(krate).join("src")).expect("list the crate's sources");
        inputs.extend(src.filter_map(Result::ok).map(|entry| entry.path()));
    }
    match inputs.iter().find(|input| modified(input) > built) {
        Some(newer) => Err(format!(
            "{} is older than {}",
            binary.display(),
            newer.display()
        )),
        None => Ok(binary),
    }
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|err| panic!("the age of {}: {err}", path.display()))
}

/// Says loudly that a test did not run: libtest captures `eprintln!` of
/// passing tests, but not writes to the stderr handle itself.
pub fn skip(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

/// Runs `first` and, once it holds the lock, `second`, each in its own
/// process, and checks that both pass, that their bodies did not overlap,
/// and that `second` really waited: the kernel listed it blocked on the lock
/// file while `first` held it. Only then is `first` let go.
pub fn take_turns(dir: &Path, first: Test<'_>, second: Test<'_>, one_thread: bool) {
    let _scratch = Scratch::new(dir);
    let mut holder = first.start(dir, one_thread);
    holder.expect(&format!("ENTERED {}", first.journal_name()));

    let mut waiter = second.start(dir, one_thread);
    let lock_file = dir.join(format!("{LOCK}.lock"));
    let start = Instant::now();
    while !common::flocks(&lock_file).contains(&(waiter.pid(), true)) {
        if let Some(status) = waiter.ended() {
            panic!(
                "{} ended ({status}) while {} held the lock, without waiting for it; \
                 journal: {:?}\n{:?}",
                second.journal_name(),
                first.journal_name(),
                journal(dir),
                waiter.finish()
            );
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{} never blocked on {} within {PATIENCE:?}",
            second.journal_name(),
            lock_file.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }

    let holder = holder.finish(); // its stdin closes: the first test finishes
    let waiter = waiter.finish();
    for (test, out) in [(first, &holder), (second, &waiter)] {
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            test.journal_name(),
            text(out)
        );
        assert!(
            out.stdout.contains("test result: ok. 1 passed"),
            "{} did not run as one passing test:\n{}",
            test.journal_name(),
            text(out)
        );
    }
    let (a, b) = (first.journal_name(), second.journal_name());
    assert_eq!(
        journal(dir),
        [
            format!("enter {a}"),
            format!("exit {a}"),
            format!("enter {b}"),
            format!("exit {b}")
        ],
        "the bodies ran one after the other"
    );
}

/// The lock directory and journal of one pair of tests, removed when
/// dropped, also when the pair failed.
struct Scratch<'a>(&'a Path);

impl Scratch<'_> {
    fn new(dir: &Path) -> Scratch<'_> {
        std::fs::create_dir_all(dir).expect("create the lock directory");
        Scratch(dir)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

fn journal(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn text(out: &Finished) -> String {
    format!("--- stdout\n{}--- stderr\n{}", out.stdout, out.stderr)
}
