//! Many hosts: lockattr processes on different "runners" (network
//! namespaces, each with a host name of its own) exclude each other through
//! one PostgreSQL server in a namespace of its own, and a runner cut off
//! the network is told it lost its lock before the server lets another
//! runner take it.
//!
//! Needs root, iproute2, util-linux and a PostgreSQL server installed
//! (`.ci/run`); without them each test says loudly that it was skipped.
//! `LOCKATTR_TEST_HOSTS_ROUNDS=N` repeats each cut N times (default 1) to
//! show the spread of the times.
#![cfg(feature = "postgres")] // the PostgreSQL backend is built only with it

mod common;
#[path = "hosts/net.rs"]
mod net;

use common::{Kid, loud, spawn_role};
use lockattr::{Lock, LockName, exclusive};
use net::{Cut, Net};
use std::io::BufRead;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEPLOY: LockName = LockName::new("hosts-deploy");

// The documented bounds (README, "Many hosts"; `lockattr/src/pg/mod.rs`):
// a cut-off holder is told within HEARTBEAT + its TCP user timeout, 8 s;
// the server lets go 14 to 16 s after the cut. The slack covers TCP's
// retransmission timer and this machine's load, never the order.
const TOLD_WITHIN: Duration = Duration::from_millis(8_000 + 1_500);
const FREED_NOT_BEFORE: Duration = Duration::from_millis(14_000 - 1_000);
const FREED_WITHIN: Duration = Duration::from_millis(16_000 + 2_000);

// ---------------------------------------------------------------- roles

#[test]
#[ignore = "a child process of the tests here, started in a role"]
fn child() {
    let Some(role) = common::role() else { return };
    let result = match role.as_str() {
        "hold" => hold(),
        "try" => try_once(),
        "wait" => wait_then_hold(),
        other => panic!("unknown role {other}"),
    };
    match result {
        Ok(()) => {}
        Err(err) if err.is_busy() => println!("busy {err}"),
        Err(err) => println!("error {err}"),
    }
}

/// Holds the lock and answers `check` with whether it still does, until
/// its input ends.
#[exclusive(DEPLOY)]
fn hold() -> Result<(), lockattr::Error> {
    let lock = Lock::new(DEPLOY);
    println!("held {} {}", lock.still_held()?, lock.fencing_token()?);
    answer(lock);
    Ok(())
}

#[exclusive(DEPLOY)]
fn try_once() -> Result<(), lockattr::Error> {
    println!("ran");
    Ok(())
}

#[exclusive(DEPLOY, wait)]
fn wait_then_hold() -> Result<(), lockattr::Error> {
    let lock = Lock::new(DEPLOY);
    println!("got {}", lock.fencing_token()?);
    answer(lock);
    Ok(())
}

fn answer(lock: Lock) {
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("check") => match lock.still_held() {
                Ok(held) => println!("still_held {held}"),
                Err(err) => println!("still_held error {err}"),
            },
            _ => return,
        }
    }
}

// ------------------------------------------------------------ harness

/// The private network of a test, or `None` (said loudly) where it
/// cannot be made.
fn network(test: &str, hosts: usize) -> Option<Net> {
    if let Some(why) = net::missing() {
        loud(&format!("SKIPPED {test}: {why}; CI (.ci/run) runs it"));
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/cluster");
    let parent = common::shared_dir("hosts");
    match Net::start(hosts, &script, &parent) {
        Ok(net) => Some(net),
        Err(err) => panic!("{test}: cannot make the hosts: {err}"),
    }
}

/// This test binary in `role` on host `k`, locking on the server. Each
/// host has a lock directory of its own, as separate machines would: a
/// lock that fell back to a local file would exclude nobody.
fn on_host(net: &Net, k: usize, role: &str) -> Kid {
    let inner = spawn_role(role);
    let mut cmd: Command = net.command(k, Path::new(inner.get_program()));
    cmd.args(inner.get_args());
    for (key, value) in inner.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let dir = common::lock_dir().join(&net.hosts[k].hostname);
    std::fs::create_dir_all(&dir).expect("the host's lock directory");
    cmd.env("LOCKATTR_URL", &net.hosts[k].url)
        .env("LOCKATTR_DIR", dir);
    Kid::start(cmd)
}

/// 0 to 2 s (the heartbeat period), from the clock's nanoseconds.
fn phase() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    Duration::from_millis(u64::from(nanos) % 2_000)
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

// ---------------------------------------------------------------- tests

/// Two runners exclude each other through the server: the second is
/// refused while the first holds (told which host and pid hold it), waits
/// in the server's queue, and runs when the first lets go, with a larger
/// fencing token.
#[test]
fn runners_on_two_hosts_exclude_each_other() {
    let Some(net) = network("runners_on_two_hosts_exclude_each_other", 2) else {
        return;
    };
    let (a_host, b_host) = (&net.hosts[0].hostname, &net.hosts[1].hostname);
    let mut a = on_host(&net, 0, "hold");
    let (held, _) = a.expect("held");
    let (still, token) = held.split_once(' ').expect("held STILL TOKEN");
    assert_eq!(still, "true");
    let first: u64 = token.parse().expect("a fencing token");
    let holder = format!("pid {} on host {a_host}", a.pid());

    let refused = on_host(&net, 1, "try").finish();
    assert!(refused.status.success(), "{refused:?}");
    let busy = refused
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("busy "))
        .unwrap_or_else(|| panic!("host {b_host} was not refused: {refused:?}"));
    assert!(busy.contains("PostgreSQL advisory key"), "{busy}");
    assert!(
        busy.contains(&holder),
        "the busy error names {holder}: {busy}"
    );

    let mut b = on_host(&net, 1, "wait");
    let (notice, _) = b.expect_stderr("waiting for");
    assert!(
        notice.contains(&holder),
        "the notice names {holder}: {notice}"
    );
    b.silent_for("got", Duration::from_millis(200));
    a.send("release");
    a.end();
    let (token, _) = b.expect("got");
    let second: u64 = token.parse().expect("a fencing token");
    assert!(
        second > first,
        "fencing tokens grow: {first}, then {second}"
    );
    b.send("release");
    assert!(b.end().success());
}

/// The holder's link is cut at the server's end: the network goes silent
/// for both. The holder must say it lost the lock (and `still_held` must
/// say false) before the server lets the waiting runner have it.
#[test]
fn a_runner_cut_off_by_the_network_is_told_before_the_lock_moves() {
    holder_learns_first(
        "a_runner_cut_off_by_the_network_is_told_before_the_lock_moves",
        Cut::ServerEnd,
    );
}

/// The holder's own interface goes down.
#[test]
fn a_runner_whose_link_goes_down_is_told_before_the_lock_moves() {
    holder_learns_first(
        "a_runner_whose_link_goes_down_is_told_before_the_lock_moves",
        Cut::HostEnd,
    );
}

fn holder_learns_first(test: &str, cut: Cut) {
    let Some(net) = network(test, 2) else { return };
    let rounds: u32 = std::env::var("LOCKATTR_TEST_HOSTS_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .clamp(1, 20);
    let mut times = Vec::new();
    for round in 1..=rounds {
        let mut a = on_host(&net, 0, "hold");
        a.expect("held true");
        let mut b = on_host(&net, 1, "wait");
        b.expect_stderr("waiting for");
        // Cut at a random point of the holder's heartbeat period, which
        // decides both times: otherwise every round cuts at the same one.
        std::thread::sleep(phase());

        let before = Instant::now();
        net.cut(0, cut).expect("cut the link");
        let cut_at = Instant::now();
        let (_, told_at) = a.expect_stderr("WARNING: exclusion may have been broken");
        a.send("check");
        let (still, _) = a.expect("still_held");
        let (_, got_at) = b.expect("got");
        let told = told_at.saturating_duration_since(cut_at);
        let freed = got_at.saturating_duration_since(cut_at);
        loud(&format!(
            "{test}, round {round}/{rounds} ({cut:?}, cut took {:.1} ms): holder told after {}, \
             lock taken on the other host after {}",
            (cut_at - before).as_secs_f64() * 1e3,
            seconds(told),
            seconds(freed),
        ));
        assert_eq!(still, "false", "a holder that was told still holds?");
        times.push((told, freed));

        net.mend(0, cut).expect("mend the link");
        drop(a);
        b.send("release");
        assert!(b.end().success());
    }
    for (told, freed) in times {
        assert!(
            told < freed,
            "{test}: the server let the other host take the lock {} after the cut, before the \
             holder was told ({})",
            seconds(freed),
            seconds(told)
        );
        assert!(
            told <= TOLD_WITHIN,
            "{test}: holder told after {}",
            seconds(told)
        );
        assert!(
            (FREED_NOT_BEFORE..=FREED_WITHIN).contains(&freed),
            "{test}: the lock moved {} after the cut; documented: 14 to 16 s",
            seconds(freed)
        );
    }
}

/// A run SIGKILLed before its `Net` was dropped leaves its namespaces and
/// what runs in them: the next run stops those processes and removes the
/// namespaces, and leaves a live run's alone.
#[test]
fn namespaces_left_by_a_killed_run_are_swept_and_a_live_runs_are_not() {
    let test = "namespaces_left_by_a_killed_run_are_swept_and_a_live_runs_are_not";
    if !common::require_root(test) || !common::require_command(test, "ip") {
        return;
    }
    // A PID that no longer runs, as a killed run's.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let dead = gone.id();
    gone.wait().expect("wait for true");
    let stale = format!("lockattr-{dead}-0-srv");
    let live = format!("lockattr-{}-sweep-test", std::process::id());
    for name in [&stale, &live] {
        let made = Command::new("ip").args(["netns", "add", name]).status();
        assert!(made.is_ok_and(|s| s.success()), "ip netns add {name}");
    }
    let mut server = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "60"])
        .spawn()
        .expect("start a process in the stale namespace");
    let inside = |name: &str| {
        let out = Command::new("ip").args(["netns", "pids", name]).output();
        String::from_utf8_lossy(&out.expect("ip netns pids").stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while inside(&stale).trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the process never entered {stale}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let swept = net::sweep_stale();

    let listed = |name: &str| {
        let out = Command::new("ip").args(["netns", "list"]).output();
        String::from_utf8_lossy(&out.expect("ip netns list").stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    };
    let live_left = listed(&live);
    let _ = Command::new("ip").args(["netns", "del", &live]).status();
    assert!(swept.contains(&stale), "{stale} not swept: {swept:?}");
    assert!(!listed(&stale), "{stale} still listed");
    let status = server.wait().expect("wait for the process");
    assert!(
        !status.success(),
        "the stale namespace's process ran on: {status}"
    );
    assert!(!swept.contains(&live), "a live run's namespace was swept");
    assert!(live_left, "a live run's namespace was removed");
}
