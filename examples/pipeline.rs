//! The build/deploy tool of the README: `build` and `deploy` must never
//! overlap, whoever starts them.
//!
//! ```text
//! cargo run --example pipeline -- demo      # both at once: deploy is refused
//! cargo run --example pipeline -- build     # in one terminal...
//! cargo run --example pipeline -- deploy    # ...and this in another
//! cargo run --example pipeline -- status    # who holds it, without taking it
//! cargo run --example pipeline -- lock-path  # the file, for flock(1) in scripts
//! cargo run --example pipeline -- advisory-key  # the key, for psql (LOCKATTR_URL)
//! ```

use lockattr::{LockName, exclusive};
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::Duration;

/// Declared once: a typo in one of the annotations would not compile.
const BUILD_DEPLOY: LockName = LockName::new("pipeline-build-deploy");

/// Compiles. Busy is an error the caller can tell apart from a failure.
#[exclusive(BUILD_DEPLOY)]
fn build() -> Result<(), lockattr::Error> {
    println!("build: compiling (pid {})...", std::process::id());
    sleep(Duration::from_secs(3));
    println!("build: artifacts written");
    Ok(())
}

/// Builds, then tags, packages and ships.
#[exclusive(BUILD_DEPLOY)]
fn deploy() -> Result<(), lockattr::Error> {
    build()?; // nested on the same thread: re-enters, never deadlocks
    println!("deploy: shipping the artifacts");
    Ok(())
}

/// Waits up to a minute for a running build or deploy, then gives up.
#[exclusive(BUILD_DEPLOY, wait = "60s")]
fn deploy_when_free() -> Result<(), lockattr::Error> {
    deploy()
}

fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    println!("demo: starting `build` in another process, then `deploy` while it runs");
    let mut build = Command::new(&me)
        .arg("build")
        .stdout(Stdio::piped())
        .spawn()?;
    // Once it says it compiles, it holds the lock.
    let mut lines = BufReader::new(build.stdout.take().expect("piped")).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    println!("{first}");
    let forward = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    let refused = Command::new(&me).arg("deploy").status()?;
    println!("demo: `deploy` exited with {refused} while `build` ran");
    let waited = Command::new(&me).arg("deploy-when-free").status()?;
    build.wait()?;
    let _ = forward.join();
    println!("demo: `deploy-when-free` waited for the build, then exited with {waited}");
    if refused.code() != Some(lockattr::EXIT_BUSY.into()) || !waited.success() {
        return Err("`deploy` was not refused with 75 while `build` ran, or \
                    `deploy-when-free` did not succeed after it"
            .into());
    }
    Ok(())
}

/// Who holds the lock, without taking it (so it never makes a real command
/// fail, and never creates the lock file).
fn status() -> Result<(), lockattr::Error> {
    let holders = lockattr::Lock::new(BUILD_DEPLOY).holders()?;
    match holders.as_slice() {
        [] => println!("{}: free", BUILD_DEPLOY),
        holders => {
            for holder in holders {
                println!("{}: held by {holder}", BUILD_DEPLOY);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    // `exit_code`: 0 when it ran, 75 when the lock was busy, 1 on failure,
    // so `pipeline build && pipeline deploy` stops after a skipped step.
    match command.as_str() {
        "build" => lockattr::exit_code(build()),
        "deploy" => lockattr::exit_code(deploy()),
        "deploy-when-free" => lockattr::exit_code(deploy_when_free()),
        "demo" => lockattr::exit_code(demo()),
        "status" => lockattr::exit_code(status()),
        // For psql users on the PostgreSQL backend: the same lock is
        // `SELECT pg_advisory_lock(<key>)`.
        #[cfg(feature = "postgres")]
        "advisory-key" => {
            println!("{}", lockattr::advisory_key(BUILD_DEPLOY.as_str()));
            ExitCode::SUCCESS
        }
        "lock-path" => lockattr::exit_code(
            lockattr::lock_path(BUILD_DEPLOY.as_str()).map(|p| println!("{}", p.display())),
        ),
        _ => {
            eprintln!(
                "usage: pipeline build|deploy|deploy-when-free|demo|status|lock-path|advisory-key"
            );
            ExitCode::from(2)
        }
    }
}
