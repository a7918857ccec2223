//! Locks on a PostgreSQL server (issue 8): what a lock costs, and how fast
//! it moves from one host to another, each against a baseline measured in
//! the same run on the same server. `cargo bench -p lockattr-bench --bench
//! pg [-- --quick | --rounds N]` (`--rounds 0`: the speed table alone), as
//! root: the bench makes a private cluster in a network namespace of its
//! own and two "hosts" (namespaces
//! linked to it by veth pairs, `tests/hosts/net.rs`), and runs every
//! measured process on a host, this binary re-run with `--child`.
//!
//! - **Speed** (host 0): a process with `LOCKATTR_URL` set calls an
//!   `#[exclusive]` fn with an empty body over and over (try-lock and
//!   release; the URL is read once per process, hence a child process);
//!   the baseline is a `SELECT 1` round trip on a tokio-postgres connection
//!   from the same host to the same server, as lockattr's own. Best of the
//!   rounds; every round starts each candidate in a fresh process, after a
//!   warm-up that opens the connection. Information rows: the same
//!   `SELECT 1` through a runtime thread of its own as lockattr's, and the
//!   two statements of a try-lock and release sent from the caller's
//!   thread, awaited one by one, pipelined as lockattr sends them, and
//!   pipelined as prepared statements.
//! - **Hand-off** (host 0 holds, host 1 waits): per round, the holder (raw
//!   tokio-postgres, `pg_advisory_lock`) takes the key, the waiter starts
//!   waiting, the holder polls `pg_locks` until the server lists the
//!   waiter, pauses 20 ms, reads CLOCK_MONOTONIC and unlocks;
//!   the waiter reads the same clock first thing once it has the lock. The
//!   floor is a waiter blocked in a raw `SELECT pg_advisory_lock(key)`.
//!   The waiters are interleaved round by round.

#[path = "../../tests/hosts/net.rs"]
mod net;

use lockattr::{LockName, advisory_key, exclusive};
use rustix::time::{ClockId, clock_gettime};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const SPEED: LockName = LockName::new("bench-pg-speed");
const HANDOFF: LockName = LockName::new("bench-pg-handoff");

/// How long the coordinator waits for any line from a child.
const PATIENCE: Duration = Duration::from_secs(30);

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the
/// machine, whatever its network namespace.
fn now_ns() -> i128 {
    let t = clock_gettime(ClockId::Monotonic);
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

// ---------------------------------------------------------------------------
// The children, on a host.

#[exclusive(SPEED)]
fn empty_body() {}

#[exclusive(HANDOFF, wait)]
fn wait_forever() -> Result<i128, lockattr::Error> {
    Ok(now_ns())
}

#[exclusive(HANDOFF, wait = "30s")]
fn wait_bounded() -> Result<i128, lockattr::Error> {
    Ok(now_ns())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A connection to `LOCKATTR_URL`, driven by `runtime`.
fn connect(runtime: &tokio::runtime::Runtime) -> Arc<Client> {
    let url = std::env::var("LOCKATTR_URL").expect("LOCKATTR_URL");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connect to the server");
        tokio::spawn(connection);
        Arc::new(client)
    })
}

async fn value(client: &Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.expect("a query");
    rows.iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

fn child(args: &[String]) {
    let key = advisory_key(HANDOFF.as_str());
    match args {
        [speed, what, n] if speed == "speed" => {
            let n: u32 = n.parse().expect("N");
            println!("ns {}", speed_child(what, n));
        }
        [holder] if holder == "holder" => {
            let runtime = runtime();
            let client = connect(&runtime);
            let waiting = format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND classid = {} AND objid = {}",
                (key as u64 >> 32) as u32,
                key as u32
            );
            for line in std::io::stdin().lock().lines() {
                let line = line.expect("read the coordinator");
                if line == "take" {
                    runtime.block_on(value(&client, &format!("SELECT pg_advisory_lock({key})")));
                    println!("taken");
                } else if let Some(settle) = line.strip_prefix("release ") {
                    let start = Instant::now();
                    while runtime.block_on(value(&client, &waiting)) == "0" {
                        assert!(start.elapsed() < PATIENCE, "the waiter never queued");
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    std::thread::sleep(Duration::from_millis(settle.parse().expect("MS")));
                    let at = now_ns();
                    runtime.block_on(value(&client, &format!("SELECT pg_advisory_unlock({key})")));
                    println!("released {at}");
                }
            }
        }
        [waiter, kind] if waiter == "waiter" => {
            let runtime = runtime();
            let client = (kind == "raw").then(|| connect(&runtime));
            for line in std::io::stdin().lock().lines() {
                if line.expect("read the coordinator") != "go" {
                    continue;
                }
                let at = match (kind.as_str(), &client) {
                    ("raw", Some(client)) => runtime.block_on(async {
                        value(client, &format!("SELECT pg_advisory_lock({key})")).await;
                        let at = now_ns();
                        value(client, &format!("SELECT pg_advisory_unlock({key})")).await;
                        at
                    }),
                    ("wait", _) => wait_forever().expect("wait"),
                    ("wait-dur", _) => wait_bounded().expect("wait 30 s"),
                    _ => panic!("unknown waiter {kind}"),
                };
                println!("got {at}");
            }
        }
        _ => panic!("unknown child {args:?}"),
    }
}

/// Nanoseconds per call of `what`, after a warm-up that connects.
fn speed_child(what: &str, n: u32) -> f64 {
    let runtime = runtime();
    let call: Box<dyn Fn()> = match what {
        "lockattr" => Box::new(empty_body),
        "select" => {
            let client = connect(&runtime);
            Box::new(move || {
                runtime.block_on(value(&client, "SELECT 1"));
            })
        }
        "select-thread" => {
            // lockattr's shape: the connection lives on a runtime thread of
            // its own, and the caller blocks on a channel for the answer.
            let client = connect(&runtime);
            let handle = runtime.handle().clone();
            std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
            Box::new(move || {
                let (tx, rx) = mpsc::sync_channel(1);
                let client = client.clone();
                handle.spawn(async move {
                    let _ = tx.send(value(&client, "SELECT 1").await);
                });
                rx.recv().expect("an answer");
            })
        }
        "raw-lock" => {
            let client = connect(&runtime);
            let key = advisory_key(SPEED.as_str());
            let (lock, unlock) = (
                format!("SELECT pg_try_advisory_lock({key})"),
                format!("SELECT pg_advisory_unlock({key})"),
            );
            Box::new(move || {
                runtime.block_on(async {
                    assert_eq!(value(&client, &lock).await, "t");
                    value(&client, &unlock).await;
                })
            })
        }
        "raw-pipelined" => {
            // lockattr's approach without its thread: the release is not
            // awaited but goes out with the next call's try-lock.
            let client = connect(&runtime);
            let key = advisory_key(SPEED.as_str());
            let (lock, unlock) = (
                format!("SELECT pg_try_advisory_lock({key})"),
                format!("SELECT pg_advisory_unlock({key})"),
            );
            let held = std::cell::Cell::new(false);
            Box::new(move || {
                let locked = runtime.block_on(async {
                    if held.get() {
                        tokio::join!(value(&client, &unlock), value(&client, &lock)).1
                    } else {
                        value(&client, &lock).await
                    }
                });
                assert_eq!(locked, "t");
                held.set(true);
            })
        }
        "raw-prepared" => {
            // The same with statements prepared once (extended protocol):
            // the server parses and plans nothing per call.
            let client = connect(&runtime);
            let key = advisory_key(SPEED.as_str());
            let (lock, unlock) = runtime.block_on(async {
                let lock = client.prepare("SELECT pg_try_advisory_lock($1)").await;
                let unlock = client.prepare("SELECT pg_advisory_unlock($1)").await;
                (lock.expect("prepare"), unlock.expect("prepare"))
            });
            let held = std::cell::Cell::new(false);
            Box::new(move || {
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
                let locked: bool = runtime.block_on(async {
                    let locked = if held.get() {
                        let both = tokio::join!(
                            client.query_one(&unlock, &key),
                            client.query_one(&lock, &key)
                        );
                        both.1
                    } else {
                        client.query_one(&lock, &key).await
                    };
                    locked.expect("try-lock").get(0)
                });
                assert!(locked);
                held.set(true);
            })
        }
        _ => panic!("unknown candidate {what}"),
    };
    for _ in 0..100 {
        call();
    }
    let start = Instant::now();
    for _ in 0..n {
        call();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

// ---------------------------------------------------------------------------
// The coordinator.

/// A child on a host, its stdout read on a thread so that every read has a
/// timeout. Killed when dropped.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a child on a host");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            stdin: child.stdin.take().expect("piped"),
            child,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .expect("write to a child");
    }

    /// The rest of the first line that starts with `word`.
    fn expect(&mut self, word: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(word) {
                        return rest.trim().to_owned();
                    }
                }
                Err(why) => panic!("child {}: no {word:?} ({why:?})", self.child.id()),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This binary with `args` on host `k`, locking on the server.
fn on_host(net: &net::Net, k: usize, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("this binary");
    let mut cmd = net.command(k, &exe);
    cmd.arg("--child")
        .args(args)
        .env("LOCKATTR_URL", &net.hosts[k].url);
    cmd
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        child(&args[at + 1..]);
        return;
    }
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var_os("LOCKATTR_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let rounds: usize = match args.iter().position(|arg| arg == "--rounds") {
        Some(at) => args[at + 1].parse().expect("--rounds N"),
        None if quick => 20,
        None => 200,
    };
    if let Some(why) = net::missing() {
        eprintln!("\n*** pg bench SKIPPED: {why} ***\n");
        return;
    }
    let parent = std::env::temp_dir().join(format!("lockattr-bench-pg-{}", std::process::id()));
    std::fs::create_dir_all(&parent).expect("create the benchmark directory");
    {
        use std::os::unix::fs::PermissionsExt;
        // The cluster runs as `postgres`, which must reach its directory.
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(&parent, mode).expect("chmod the benchmark directory");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pg/cluster");
    let net = net::Net::start(2, &script, &parent).expect("make the hosts and the server");
    println!(
        "PostgreSQL {} in a network namespace, two hosts linked to it by veth pairs; {}",
        server_version(),
        machine()
    );
    speed(&net, quick);
    if rounds > 0 {
        handoff(&net, rounds);
    }
    drop(net);
    let _ = std::fs::remove_dir_all(&parent);
}

fn server_version() -> String {
    let out = Command::new("psql").arg("--version").output();
    out.map(|out| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace("psql (PostgreSQL) ", "")
    })
    .unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, Linux {}, load average {}",
        kernel.trim(),
        loadavg()
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn speed(net: &net::Net, quick: bool) {
    let (rounds, n) = if quick { (2, 300) } else { (5, 2000) };
    let candidates = [
        (
            "`SELECT 1`, tokio-postgres, awaited on the caller's thread",
            "select",
        ),
        (
            "`SELECT 1` on a runtime thread, the caller blocked on a channel",
            "select-thread",
        ),
        (
            "raw `pg_try_advisory_lock` + `pg_advisory_unlock`, each awaited",
            "raw-lock",
        ),
        (
            "raw, the unlock sent with the next try-lock, on the caller's thread",
            "raw-pipelined",
        ),
        ("the same with prepared statements", "raw-prepared"),
        (
            "#[exclusive] fn, repeated call (try-lock + release)",
            "lockattr",
        ),
    ];
    let mut best = [f64::INFINITY; 6];
    for round in 0..rounds {
        for i in 0..candidates.len() {
            let at = (round + i) % candidates.len();
            let mut proc = Proc::start(on_host(
                net,
                0,
                &["speed", candidates[at].1, &n.to_string()],
            ));
            let ns: f64 = proc.expect("ns").parse().expect("ns per call");
            best[at] = best[at].min(ns);
        }
    }
    println!();
    println!(
        "Speed, host 0 to the server over veth: best of {rounds} rounds of {n} calls, each in a fresh process"
    );
    println!();
    println!("| candidate | per call | / `SELECT 1` | goal | result |");
    println!("|---|---:|---:|---|---|");
    for (at, (label, what)) in candidates.iter().enumerate() {
        let ratio = best[at] / best[0];
        let (goal, result) = match *what {
            "select" => ("baseline", ""),
            "lockattr" => ("<= 2.00x", if ratio <= 2.0 { "met" } else { "MISSED" }),
            _ => ("", ""),
        };
        println!(
            "| {label} | {:.1} µs | {ratio:.2}x | {goal} | {result} |",
            best[at] / 1000.0
        );
    }
}

fn handoff(net: &net::Net, rounds: usize) {
    let settle = 20;
    let mut holder = Proc::start(on_host(net, 0, &["holder"]));
    let mut waiters = [
        ("floor: raw `SELECT pg_advisory_lock(key)`", "raw"),
        ("lockattr `wait`", "wait"),
        ("lockattr `wait = \"30s\"`", "wait-dur"),
    ]
    .map(|(label, kind)| {
        let proc = Proc::start(on_host(net, 1, &["waiter", kind]));
        (label, proc, Vec::with_capacity(rounds))
    });
    let start = Instant::now();
    // Three rounds each first that are not counted: they connect.
    for round in 0..rounds + 3 {
        for i in 0..waiters.len() {
            let at = (round + i) % waiters.len();
            let (_, waiter, samples) = &mut waiters[at];
            holder.send("take");
            holder.expect("taken");
            waiter.send("go");
            holder.send(&format!("release {settle}"));
            let released: i128 = holder.expect("released").parse().expect("a clock");
            let got: i128 = waiter.expect("got").parse().expect("a clock");
            if round >= 3 {
                samples.push(got - released);
            }
        }
    }
    let took = start.elapsed();
    println!();
    println!(
        "Hand-off, host 0's release -> a waiter on host 1 running: {rounds} rounds per waiter, \
         interleaved; released {settle} ms after the server listed the waiter; {took:.1?} in all"
    );
    println!();
    println!(
        "| waiter on another host | median | p90 | p99 | max | median / floor | goal (median) | result |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    let floor = {
        let mut xs = waiters[0].2.clone();
        xs.sort_unstable();
        percentile(&xs, 50)
    };
    for (label, _, samples) in &mut waiters {
        samples.sort_unstable();
        let median = percentile(samples, 50);
        let (goal, result) = match label.starts_with("lockattr") {
            true => ("< 5 ms", if median < 5_000_000 { "met" } else { "MISSED" }),
            false => ("", ""),
        };
        println!(
            "| {label} | {} | {} | {} | {} | {:.2}x | {goal} | {result} |",
            show(median),
            show(percentile(samples, 90)),
            show(percentile(samples, 99)),
            show(*samples.last().expect("samples")),
            median as f64 / floor as f64,
        );
    }
}

/// The nearest-rank percentile `p` (0-100) of sorted `xs`.
fn percentile(xs: &[i128], p: usize) -> i128 {
    let rank = (xs.len() * p).div_ceil(100).max(1);
    xs[rank - 1]
}

fn show(ns: i128) -> String {
    let us = ns as f64 / 1000.0;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}
