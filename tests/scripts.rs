//! What a shell script sees: exit statuses that tell busy from failure,
//! lines that start with the program's name, and a lock file it can hand to
//! `flock(1)` without falling into the `O_CREAT` trap.
//!
//! Each test works in its own directory; the tools are child processes
//! (this binary in a role) whose default directory comes from
//! `LOCKATTR_DIR`, as an operator would set it.

mod agent;
mod common;

use agent::{Agent, Reply, TempDir};
use common::{Finished, Kid};
use lockattr::{LockName, exclusive};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, ExitCode};
use std::time::Duration;

const TOOL: LockName = LockName::new("scripts-tool");

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    let code = match role.as_str() {
        agent::ROLE => agent::serve(),
        "anyhow" => lockattr::exit_code(anyhow_tool()),
        "context" => lockattr::exit_code(context_tool()),
        "io" => lockattr::exit_code(io_tool()),
        "boxed" => lockattr::exit_code(boxed_tool()),
        "body-error" => lockattr::exit_code(body_error_tool()),
        "unit" => {
            unit_tool();
            ExitCode::SUCCESS
        }
        "waiting" => lockattr::exit_code(waiting_tool()),
        "lock-path" => match lockattr::lock_path(TOOL.as_str()) {
            Ok(path) => {
                println!("PATH {}", path.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                println!("ERR {:?} {err}", err.kind());
                ExitCode::FAILURE
            }
        },
        other => panic!("unknown role {other:?}"),
    };
    // What `fn main() -> ExitCode` would exit with.
    let status = (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .expect("a u8 status");
    std::process::exit(status.into());
}

#[exclusive(TOOL)]
fn anyhow_tool() -> anyhow::Result<()> {
    println!("RAN");
    Ok(())
}

#[exclusive(TOOL)]
fn locked_step() -> anyhow::Result<()> {
    Ok(())
}

fn context_tool() -> anyhow::Result<()> {
    use anyhow::Context;
    locked_step().context("deploying to staging")?;
    println!("RAN");
    Ok(())
}

#[exclusive(TOOL)]
fn io_tool() -> std::io::Result<()> {
    println!("RAN");
    Ok(())
}

#[exclusive(TOOL)]
fn boxed_tool() -> Result<(), Box<dyn std::error::Error>> {
    println!("RAN");
    Ok(())
}

#[exclusive(TOOL)]
fn body_error_tool() -> anyhow::Result<()> {
    anyhow::bail!("the build broke")
}

#[exclusive(TOOL)]
fn unit_tool() {
    println!("RAN");
}

#[exclusive(TOOL, wait = "20s")]
fn waiting_tool() -> anyhow::Result<()> {
    println!("RAN");
    Ok(())
}

fn program() -> String {
    let exe = std::env::current_exe().unwrap();
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

fn tool(role: &str, dir: &std::path::Path) -> Command {
    let mut cmd = common::spawn_role(role);
    cmd.env("LOCKATTR_DIR", dir);
    cmd
}

fn run(cmd: Command) -> Finished {
    common::output(cmd)
}

fn stdout(output: &Finished) -> String {
    output.stdout.clone()
}

/// The rest of the first stdout line that starts with `prefix` (libtest
/// prints its own lines around the child's).
fn field(output: &Finished, prefix: &str) -> Option<String> {
    let line = output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix));
    line.map(str::to_owned)
}

fn stderr(output: &Finished) -> String {
    output.stderr.clone()
}

#[exclusive("scripts-older-busy")]
fn older_busy() -> anyhow::Result<()> {
    Ok(())
}

/// A busy error inside `anyhow::Error` is told by its message: it is still
/// 75 after the program made newer busy errors (other locks, other
/// threads) before returning it.
#[test]
fn a_busy_anyhow_error_exits_75_after_newer_busy_errors() {
    let held: Vec<LockName> = (0..10)
        .map(|i| LockName::parse(&format!("scripts-newer-busy-{i}")).unwrap())
        .chain([LockName::new("scripts-older-busy")])
        .collect();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let names = held.clone();
    let holder = std::thread::spawn(move || {
        let guards: Vec<_> = names
            .iter()
            .map(|name| lockattr::Lock::new(*name).acquire().unwrap())
            .collect();
        ready_tx.send(()).unwrap();
        let _ = done.recv();
        drop(guards);
    });
    ready.recv().unwrap();
    let older = older_busy().expect_err("busy");
    for name in &held[..10] {
        let newer = lockattr::Lock::new(*name).acquire().map(drop);
        assert!(newer.expect_err("busy").is_busy());
    }
    assert_eq!(lockattr::exit_code(Err(older)), ExitCode::from(75));
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

/// The README's example tool, `examples/pipeline.rs`, as a script runs it:
/// `build` or `deploy` while a build runs exits 75 without running, so
/// `pipeline build && pipeline deploy` stops there; free, both exit 0.
#[test]
fn the_pipeline_example_exits_75_when_busy_and_0_when_it_ran() {
    let test = "the_pipeline_example_exits_75_when_busy_and_0_when_it_ran";
    let pipeline = match common::example("pipeline") {
        Ok(pipeline) => pipeline,
        Err(why) => {
            common::loud(&format!(
                "SKIPPED {test}: {why}; `cargo test --workspace` builds it"
            ));
            return;
        }
    };
    let dir = TempDir::new("pipeline");
    let run = |command: &str| {
        let mut cmd = Command::new(&pipeline);
        cmd.arg(command).env("LOCKATTR_DIR", dir.path());
        cmd
    };
    let mut build = Kid::start(run("build"));
    // It holds the lock for three seconds after this line.
    build.expect_within("build: compiling", Duration::from_secs(30));
    for command in ["build", "deploy"] {
        let busy = common::output(run(command));
        assert_eq!(busy.status.code(), Some(75), "{command}: {busy:?}");
        assert!(busy.stdout.is_empty(), "{command} ran: {busy:?}");
        assert!(
            busy.stderr.contains("is busy: held by"),
            "{command}: {busy:?}"
        );
        common::assert_names_pid(&busy.stderr, build.pid());
    }
    let built = build.finish();
    assert!(built.status.success(), "{built:?}");
    let deployed = common::output(run("deploy"));
    assert_eq!(deployed.status.code(), Some(0), "{deployed:?}");
    assert!(deployed.stdout.contains("deploy: shipping"), "{deployed:?}");
}

/// `exit_code` maps busy to 75 for every `Result` shape a tool returns
/// (anyhow, anyhow with context, `io::Result`, `Box<dyn Error>`), prints the
/// error once starting with the program's name, and exits 0 when it ran.
#[test]
fn busy_exits_75_and_free_exits_0() {
    for role in ["anyhow", "context", "io", "boxed"] {
        let dir = TempDir::new("exit");
        let ran = run(tool(role, dir.path()));
        assert_eq!(ran.status.code(), Some(0), "{role} free: {ran:?}");
        assert!(stdout(&ran).contains("RAN"));

        let mut holder = Agent::start(TOOL.as_str(), Some(dir.path()));
        assert_eq!(holder.lock(), Reply::Held);
        let busy = run(tool(role, dir.path()));
        assert_eq!(busy.status.code(), Some(75), "{role} busy: {busy:?}");
        assert!(
            !stdout(&busy).contains("RAN"),
            "{role}: the body did not run"
        );
        let text = stderr(&busy);
        let line = text.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("{}: ", program())),
            "{role}: {text:?}"
        );
        assert!(line.contains("is busy"), "{role}: {line}");
        common::assert_names_pid(line, holder.pid());
        assert_eq!(text.lines().count(), 1, "{role}: one line: {text:?}");
        if role == "context" {
            assert!(
                line.contains("deploying to staging: lock"),
                "keeps the context: {line}"
            );
        }
    }
}

/// A real failure stays 1: a setup error (the directory is missing) and the
/// body's own error.
#[test]
fn failures_exit_1() {
    let missing = std::path::Path::new("/nonexistent-lockattr-scripts-dir");
    let failed = run(tool("anyhow", missing));
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let text = stderr(&failed);
    assert!(
        text.starts_with(&format!("{}: cannot ", program())),
        "{text:?}"
    );
    assert!(text.contains("No such file or directory"), "{text:?}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "said once: {text:?}"
    );

    let dir = TempDir::new("body-error");
    let failed = run(tool("body-error", dir.path()));
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(stderr(&failed).contains("the build broke"));
}

/// The busy line of a `()` tool starts with the program's name (and such a
/// tool exits 0 when busy: SPEC's choice, which the README warns about).
#[test]
fn the_busy_line_of_a_unit_tool_starts_with_the_program() {
    let dir = TempDir::new("unit");
    let mut holder = Agent::start(TOOL.as_str(), Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    let busy = run(tool("unit", dir.path()));
    assert_eq!(busy.status.code(), Some(0));
    assert!(!stdout(&busy).contains("RAN"));
    let text = stderr(&busy);
    assert!(
        text.starts_with(&format!(
            "{}: not running: lock \"scripts-tool\"",
            program()
        )),
        "{text:?}"
    );
    let path = dir.path().join("scripts-tool.lock");
    assert!(
        text.contains(&format!("({})", path.display())),
        "names the lock file {}: {text:?}",
        path.display()
    );
    common::assert_names_pid(&text, holder.pid());
}

/// The waiting notice starts with the program's name too; the tool runs
/// once the holder lets go.
#[test]
fn the_waiting_notice_starts_with_the_program() {
    let dir = TempDir::new("notice");
    let mut holder = Agent::start(TOOL.as_str(), Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    let mut waiter = Kid::start(tool("waiting", dir.path()));
    let (line, _) = waiter.expect_stderr("waiting for");
    assert!(
        line.starts_with(&format!("{}: waiting for lock", program())),
        "{line:?}"
    );
    common::assert_names_pid(&line, holder.pid());
    holder.unlock();
    let finished = waiter.finish();
    assert_eq!(finished.status.code(), Some(0), "ran after the wait");
}

// ------------------------------------------------------------ lock_path

/// `lock_path` makes the file exist, with mode 0644 even under umask 077,
/// so that a script can open it read-only.
#[test]
fn lock_path_makes_a_shared_file() {
    let dir = TempDir::new("lock-path");
    let output = run(umask(tool("lock-path", dir.path()), "077"));
    assert!(output.status.success(), "{output:?}");
    let path = dir.path().join("scripts-tool.lock");
    assert_eq!(field(&output, "PATH "), Some(path.display().to_string()));
    let meta = std::fs::symlink_metadata(&path).expect("the file exists");
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
}

/// With `LOCKATTR_URL` set the lock is not a local file: `lock_path` says
/// so instead of handing a script a file nobody else locks.
#[test]
fn lock_path_refuses_under_lockattr_url() {
    let dir = TempDir::new("lock-path-url");
    let mut cmd = tool("lock-path", dir.path());
    cmd.env("LOCKATTR_URL", "postgres://ci@db.example/locks");
    let output = run(cmd);
    assert!(!output.status.success());
    let err = field(&output, "ERR ").unwrap_or_default();
    assert!(err.starts_with("Config "), "{output:?}");
    assert!(err.contains("LOCKATTR_URL"), "{err}");
    assert!(
        !dir.path().join("scripts-tool.lock").exists(),
        "no local file made"
    );
}

/// The README's recipe: the script opens the file read-only on its own
/// descriptor and exits 75 when busy. (The multi-user and
/// `fs.protected_regular` cases are in `tests/users.rs`.)
#[test]
fn the_flock_recipe_excludes_and_exits_75_when_busy() {
    if !common::require_command("the_flock_recipe_excludes_and_exits_75_when_busy", "flock") {
        return;
    }
    let dir = TempDir::new("recipe");
    let path = field(&run(tool("lock-path", dir.path())), "PATH ").expect("a path");
    let recipe = |path: &str| {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"( flock -n 9 || exit 75; [ /dev/fd/9 -ef "$1" ] || exit 75; echo RAN ) 9<"$1""#,
            "sh",
            path,
        ]);
        run(cmd)
    };
    let free = recipe(&path);
    assert_eq!(free.status.code(), Some(0), "{free:?}");
    assert_eq!(stdout(&free).trim(), "RAN");

    let mut holder = Agent::start(TOOL.as_str(), Some(dir.path()));
    assert_eq!(holder.lock(), Reply::Held);
    let busy = recipe(&path);
    assert_eq!(busy.status.code(), Some(75), "{busy:?}");
    holder.unlock();
    assert_eq!(recipe(&path).status.code(), Some(0));
    let mode = std::fs::metadata(&path).unwrap().mode();
    assert_eq!(mode & 0o777, 0o644);
}

/// The recipe's `-ef` check: a script that opened the file, then found it
/// replaced by the time it held the lock, does not run (75: try again);
/// without the check it would run beside the new file's holder.
#[test]
fn the_flock_recipe_refuses_a_file_replaced_under_it() {
    let test = "the_flock_recipe_refuses_a_file_replaced_under_it";
    if !common::require_command(test, "flock") {
        return;
    }
    let dir = TempDir::new("recipe-replaced");
    let path = field(&run(tool("lock-path", dir.path())), "PATH ").expect("a path");
    for (checked, script) in [
        (true, r#"[ /dev/fd/9 -ef "$1" ] || exit 75; echo RAN"#),
        (false, "echo RAN"),
    ] {
        // Opens the file, says so, and takes the lock once told to.
        let body = format!(r#"exec 9<"$1"; echo OPENED; read go; flock -n 9 || exit 75; {script}"#);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &body, "sh", &path]);
        let mut script = common::Kid::start(cmd);
        script.expect("OPENED");
        // Replaced, and the new file held by lockattr, meanwhile.
        let other = std::path::Path::new(&path).with_extension("new");
        std::fs::write(&other, "").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let mut holder = Agent::start(TOOL.as_str(), Some(dir.path()));
        assert_eq!(holder.lock(), Reply::Held);
        script.send("go");
        let finished = script.finish();
        if checked {
            assert_eq!(finished.status.code(), Some(75), "{finished:?}");
            assert!(
                !finished.stdout.contains("RAN"),
                "ran on an orphan: {finished:?}"
            );
        } else {
            assert!(
                finished.stdout.contains("RAN"),
                "the naive recipe runs: {finished:?}"
            );
        }
        holder.unlock();
    }
}

/// Runs `cmd` under `umask` (through `sh -c 'umask M; exec ...'`).
fn umask(cmd: Command, mask: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    sh
}
