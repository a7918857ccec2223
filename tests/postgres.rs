//! The PostgreSQL backend against real servers (`LOCKATTR_URL`, feature
//! `postgres`): exclusion across processes and who is named when busy, a
//! SIGKILLed holder, waits that queue in the server (bounded, unbounded,
//! cancelled), shared holders, `async fn` under tokio, fencing tokens,
//! locks lost to the server, restarts, PgBouncer, standbys, sqlx's keys,
//! TLS, and a build without the feature.
//!
//! Servers come from `tests/pg` (the run's shared one, or a private one for
//! a test that restarts or reconfigures it). The other processes are this
//! test binary re-run in a role with `LOCKATTR_URL` set (it is read once per
//! process): most often a [`Locker`], which takes and lets go of one lock
//! when told. Without a server every test says loudly that it skipped.
#![cfg(feature = "postgres")] // the PostgreSQL backend is built only with it

mod common;
mod pg;

use common::Kid;
use lockattr::{Lock, LockName, exclusive};
use pg::{Cluster, Database, Sql};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The lock a child works on.
const NAME_VAR: &str = "LOCKATTR_TEST_PG_NAME";

/// The fixed name of the attribute tests; they run in a [`Database`] of
/// their own.
const ASYNC: LockName = LockName::new("pg-async");

fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").expect("write stdout");
    out.flush().expect("flush stdout");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_owned()
}

// --------------------------------------------------------------- children

#[test]
#[ignore = "only as a child process of another test"]
fn child() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        "locker" => locker_role(),
        "async-hold" => async_hold_role(),
        "async-cancel" => async_cancel_role(),
        "deploy" => deploy_role(),
        other => panic!("unknown role {other:?}"),
    }
}

/// Takes and lets go of `Lock::new(NAME)` as the parent says, one command
/// a line, each answered with one `PG ...` line:
///
/// - `lock`, `lock-shared`, `wait`, `wait-for MS`: `HELD MS`,
///   `BUSY MS PID HOST BACKEND MESSAGE` (the holder as `Holder` gives it,
///   `-` where unknown) or `ERR MS KIND MESSAGE`, with the milliseconds the
///   call took;
/// - `unlock`: drops the newest guard, `UNLOCKED`;
/// - `still-held`: `STILL true|false` (`Lock::still_held`);
/// - `token`: `TOKEN N N` (`Lock::fencing_token`, then the newest guard's).
fn locker_role() -> ! {
    let name = std::env::var(NAME_VAR).expect("the lock's name");
    let lock = Lock::new(LockName::try_new(common::leak(name)).expect("a valid name"));
    let mut guards = Vec::new();
    say("READY");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        let (command, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let reply = match command {
            "lock" => take(lock, &mut guards),
            "lock-shared" => take(lock.shared(), &mut guards),
            "wait" => take(lock.wait(), &mut guards),
            "wait-for" => {
                let ms = arg.parse().expect("milliseconds");
                take(lock.wait_for(Duration::from_millis(ms)), &mut guards)
            }
            "unlock" => {
                drop(guards.pop().expect("unlock without a hold"));
                "UNLOCKED".to_owned()
            }
            "still-held" => match lock.still_held() {
                Ok(held) => format!("STILL {held}"),
                Err(err) => failure(0, &err),
            },
            "token" => {
                let guard = guards.last().map(lockattr::Guard::fencing_token);
                match (lock.fencing_token(), guard) {
                    (Ok(token), Some(Ok(again))) => format!("TOKEN {token} {again}"),
                    (Err(err), _) | (_, Some(Err(err))) => failure(0, &err),
                    (Ok(_), None) => panic!("token without a hold"),
                }
            }
            other => panic!("unknown command {other:?}"),
        };
        say(format_args!("PG {reply}"));
    }
    std::process::exit(0)
}

fn take(lock: Lock, guards: &mut Vec<lockattr::Guard>) -> String {
    let start = Instant::now();
    let taken = lock.acquire();
    let ms = start.elapsed().as_millis();
    match taken {
        Ok(guard) => {
            guards.push(guard);
            format!("HELD {ms}")
        }
        Err(err) => failure(ms, &err),
    }
}

/// `BUSY MS PID HOST BACKEND MESSAGE` or `ERR MS KIND MESSAGE`.
fn failure(ms: u128, err: &lockattr::Error) -> String {
    let message = err.to_string().replace('\n', " ");
    let Some(holder) = err.holder() else {
        return format!("ERR {ms} {:?} {message}", err.kind());
    };
    let (host, backend) = match holder {
        lockattr::Holder::Session {
            host, backend_pid, ..
        } => (host.clone(), Some(*backend_pid)),
        _ => (None, None),
    };
    let dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    format!(
        "BUSY {ms} {} {} {} {message}",
        dash(holder.pid().map(|pid| pid.to_string())),
        dash(host),
        dash(backend.map(|pid| pid.to_string())),
    )
}

/// What a [`Locker`] answered to a lock request.
#[derive(Debug)]
struct Answer {
    /// `HELD`, `BUSY` or `ERR`.
    outcome: String,
    /// How long the call took, in the child.
    ms: u64,
    /// Busy: the holder's pid, host and database session, where known.
    pid: Option<u32>,
    host: Option<String>,
    backend: Option<u32>,
    /// Err: the `ErrorKind`.
    kind: Option<String>,
    message: String,
    /// When the answer arrived.
    at: Instant,
}

impl Answer {
    fn parse(line: &str, at: Instant) -> Answer {
        let mut answer = Answer {
            outcome: String::new(),
            ms: 0,
            pid: None,
            host: None,
            backend: None,
            kind: None,
            message: String::new(),
            at,
        };
        let mut fields = line.splitn(2, ' ');
        answer.outcome = fields.next().unwrap_or_default().to_owned();
        let rest = fields.next().unwrap_or_default();
        let field = |text: &str| (text != "-").then(|| text.to_owned());
        match answer.outcome.as_str() {
            "HELD" => answer.ms = rest.parse().expect("milliseconds"),
            "BUSY" => {
                let parts: Vec<&str> = rest.splitn(5, ' ').collect();
                answer.ms = parts[0].parse().expect("milliseconds");
                answer.pid = field(parts[1]).map(|pid| pid.parse().expect("a pid"));
                answer.host = field(parts[2]);
                answer.backend = field(parts[3]).map(|pid| pid.parse().expect("a pid"));
                answer.message = parts[4].to_owned();
            }
            "ERR" => {
                let parts: Vec<&str> = rest.splitn(3, ' ').collect();
                answer.ms = parts[0].parse().expect("milliseconds");
                answer.kind = Some(parts[1].to_owned());
                answer.message = parts[2].to_owned();
            }
            other => panic!("not a lock answer: {other} {rest}"),
        }
        answer
    }

    fn held(&self) -> bool {
        self.outcome == "HELD"
    }

    #[track_caller]
    fn assert_held(&self, what: &str) {
        assert!(self.held(), "{what}: expected HELD, got {self:#?}");
    }

    /// Busy, held by lockattr process `pid` on this host.
    #[track_caller]
    fn assert_busy_by(&self, pid: u32, what: &str) {
        assert_eq!(self.outcome, "BUSY", "{what}: {self:#?}");
        assert_eq!(
            self.pid,
            Some(pid),
            "{what}: names another holder: {self:#?}"
        );
        assert_eq!(self.host.as_deref(), Some(hostname().as_str()), "{self:#?}");
        let named = format!("held by pid {pid} on host {}", hostname());
        assert!(self.message.contains(&named), "{what}: {}", self.message);
    }

    #[track_caller]
    fn assert_err(&self, what: &str) -> &str {
        assert_eq!(self.outcome, "ERR", "{what}: {self:#?}");
        &self.message
    }
}

/// A child process that locks one name on a server (`LOCKATTR_URL`) when
/// told: the role `locker`.
struct Locker {
    kid: Kid,
}

impl Locker {
    fn start(url: &str, name: &str) -> Locker {
        Locker::with_env(url, name, &[])
    }

    fn with_env(url: &str, name: &str, env: &[(&str, &str)]) -> Locker {
        let mut cmd = common::spawn_role("locker");
        cmd.env("LOCKATTR_URL", url).env(NAME_VAR, name);
        cmd.envs(env.iter().copied());
        let mut kid = Kid::start(cmd);
        kid.expect("READY");
        Locker { kid }
    }

    fn pid(&self) -> u32 {
        self.kid.pid()
    }

    /// Sends a command without waiting for its answer (a wait).
    fn send(&mut self, command: &str) {
        self.kid.send(command);
    }

    /// The answer to the lock request sent last.
    fn answer(&mut self) -> Answer {
        let (line, at) = self.kid.expect("PG");
        Answer::parse(&line, at)
    }

    fn ask(&mut self, command: &str) -> Answer {
        self.send(command);
        self.answer()
    }

    /// Lets go of the newest hold; returns when the child said so.
    fn unlock(&mut self) -> Instant {
        self.send("unlock");
        let (line, at) = self.kid.expect("PG");
        assert_eq!(line, "UNLOCKED");
        at
    }

    fn still_held(&mut self) -> bool {
        self.send("still-held");
        match self.kid.expect("PG").0.as_str() {
            "STILL true" => true,
            "STILL false" => false,
            other => panic!("still-held: {other}"),
        }
    }

    /// The fencing token of the newest hold, asked twice (`Lock`, `Guard`).
    fn tokens(&mut self) -> (u64, u64) {
        self.send("token");
        let line = self.kid.expect("PG").0;
        let parse = |text: &str| text.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
        match line
            .strip_prefix("TOKEN ")
            .and_then(|rest| rest.split_once(' '))
        {
            Some((first, again)) => (parse(first), parse(again)),
            None => panic!("token: {line}"),
        }
    }

    /// Locks once the holder before it let go: an unlock goes out without
    /// waiting for the server's answer, so the server may see it a moment
    /// after the holder's `UNLOCKED`.
    fn lock_once_free(&mut self, what: &str) {
        pg::until(what, || self.ask("lock").held().then_some(()));
    }

    /// A token, checked to be the same however it is asked.
    fn token(&mut self) -> u64 {
        let (first, again) = self.tokens();
        assert_eq!(first, again, "one hold, one fencing token");
        first
    }
}

// ------------------------------------------------------------ the server's view

fn key_parts(key: i64) -> (u32, u32) {
    let key = key as u64;
    ((key >> 32) as u32, key as u32)
}

/// The sessions `pg_locks` lists on advisory `key` in `sql`'s database,
/// granted or waiting.
fn sessions_on(sql: &Sql, key: i64, granted: bool) -> Vec<u32> {
    let (classid, objid) = key_parts(key);
    let rows = sql.rows(&format!(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
         AND classid = {classid} AND objid = {objid} AND granted = {granted} \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         ORDER BY pid"
    ));
    rows.into_iter()
        .map(|row| row[0].as_deref().expect("a pid").parse().expect("a pid"))
        .collect()
}

/// The one session waiting for `key`, once the server lists it.
fn waiter_on(sql: &Sql, key: i64) -> u32 {
    pg::until(
        "a session waiting for the key in pg_locks",
        || match sessions_on(sql, key, false).as_slice() {
            [one] => Some(*one),
            [] => None,
            many => panic!("several sessions wait: {many:?}"),
        },
    )
}

/// The one session holding `key`.
fn holder_on(sql: &Sql, key: i64) -> u32 {
    pg::until(
        "the session holding the key in pg_locks",
        || match sessions_on(sql, key, true).as_slice() {
            [one] => Some(*one),
            _ => None,
        },
    )
}

/// A session as `pg_stat_activity` shows it.
#[derive(Debug, PartialEq, Eq)]
struct Activity {
    application: String,
    state: String,
    wait_event_type: String,
    wait_event: String,
    query: String,
    query_start: String,
    backend_start: String,
}

fn activity(sql: &Sql, backend: u32) -> Option<Activity> {
    let rows = sql.rows(&format!(
        "SELECT application_name, coalesce(state, ''), coalesce(wait_event_type, ''), \
         coalesce(wait_event, ''), query, query_start::text, backend_start::text \
         FROM pg_stat_activity WHERE pid = {backend}"
    ));
    let row = rows.into_iter().next()?;
    let text = |i: usize| row[i].clone().unwrap_or_default();
    Some(Activity {
        application: text(0),
        state: text(1),
        wait_event_type: text(2),
        wait_event: text(3),
        query: text(4),
        query_start: text(5),
        backend_start: text(6),
    })
}

// ----------------------------------------------------- exclusion and holders

/// Two processes exclude each other on the server; the busy one names the
/// holder's pid and host (`Holder::Session`, `Holder::pid`) and its
/// database session, and says which backend: PostgreSQL, the advisory key
/// and the server. Shared requests are refused too, and the lock passes to
/// the other process once let go.
#[test]
fn two_processes_exclude_and_busy_names_the_holder() {
    let Some(url) = pg::shared("two_processes_exclude_and_busy_names_the_holder") else {
        return;
    };
    let name = common::unique_name("pg-exclude");
    let key = lockattr::advisory_key(&name);
    let sql = Sql::connect(url);
    let mut a = Locker::start(url, &name);
    let mut b = Locker::start(url, &name);

    a.ask("lock").assert_held("a, first");
    let session = holder_on(&sql, key);
    for request in ["lock", "lock-shared"] {
        let busy = b.ask(request);
        busy.assert_busy_by(a.pid(), request);
        assert_eq!(busy.backend, Some(session), "a's database session");
        let backend = format!(
            "lock \"{name}\" (PostgreSQL advisory key {key} on {}) is busy",
            pg::label(url)
        );
        assert!(busy.message.contains(&backend), "{}", busy.message);
        assert!(
            busy.message
                .contains(&format!("database session {session}")),
            "{}",
            busy.message
        );
    }

    a.unlock();
    b.lock_once_free("b, once a let go");
    a.ask("lock").assert_busy_by(b.pid(), "a, after b took it");
}

/// A holder killed by SIGKILL cannot let go itself: its connection closes
/// with it, the server ends its session and grants the lock to the next in
/// its queue within a second.
#[test]
fn a_killed_holder_frees_the_lock_within_a_second() {
    let Some(url) = pg::shared("a_killed_holder_frees_the_lock_within_a_second") else {
        return;
    };
    let name = common::unique_name("pg-kill");
    let key = lockattr::advisory_key(&name);
    let sql = Sql::connect(url);
    let mut holder = Locker::start(url, &name);
    let mut waiter = Locker::start(url, &name);
    holder.ask("lock").assert_held("holder");
    waiter.send("wait");
    waiter_on(&sql, key);

    let killed = holder.kid.kill();
    let granted = waiter.answer();
    granted.assert_held("the waiter, after the holder was killed");
    let took = granted.at.saturating_duration_since(killed);
    eprintln!("SIGKILLed holder: the waiter had the lock {took:?} later");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(
        holder.kid.end().code().is_none(),
        "the holder died of the signal"
    );
}

// ---------------------------------------------------------------- waiting

/// `wait = "DUR"` gives up on time and reports busy, naming the holder;
/// its wait in the server's queue ends with it (by `lock_timeout`, or the
/// cancel sent when the last waiter leaves, whichever comes first).
#[test]
fn a_bounded_wait_gives_up_on_time() {
    let Some(url) = pg::shared("a_bounded_wait_gives_up_on_time") else {
        return;
    };
    let name = common::unique_name("pg-bounded");
    let key = lockattr::advisory_key(&name);
    let sql = Sql::connect(url);
    let mut holder = Locker::start(url, &name);
    let mut waiter = Locker::start(url, &name);
    holder.ask("lock").assert_held("holder");
    // Connected and checked first, so the wait measures waiting alone.
    waiter
        .ask("lock")
        .assert_busy_by(holder.pid(), "a first try");

    for limit in [300, 1500] {
        let answer = waiter.ask(&format!("wait-for {limit}"));
        answer.assert_busy_by(holder.pid(), "a bounded wait");
        eprintln!("wait = \"{limit}ms\" gave up after {} ms", answer.ms);
        assert!(answer.ms >= limit, "gave up early: {answer:#?}");
        assert!(answer.ms < limit + 500, "gave up late: {answer:#?}");
        pg::until("the server's queue empty after the bounded wait", || {
            sessions_on(&sql, key, false).is_empty().then_some(())
        });
    }
}

/// A wait (unbounded, and bounded by a long limit) queues in the server:
/// `pg_locks` lists the waiter's session as not granted, and that session
/// runs one query the whole time (the same `query_start`, waiting on an
/// advisory lock) rather than asking again and again, also after the
/// "waiting" notice a second later. When the holder lets go, the waiter
/// runs at once.
#[test]
fn a_wait_queues_in_the_server_without_polling() {
    let Some(url) = pg::shared("a_wait_queues_in_the_server_without_polling") else {
        return;
    };
    let name = common::unique_name("pg-queue");
    let key = lockattr::advisory_key(&name);
    let sql = Sql::connect(url);
    let mut holder = Locker::start(url, &name);
    let mut waiter = Locker::start(url, &name);

    for wait in ["wait", "wait-for 60000"] {
        holder.lock_once_free("the holder, once the waiter let go");
        waiter.send(wait);
        let session = waiter_on(&sql, key);
        let before = activity(&sql, session).expect("the waiter's session");
        assert!(
            before
                .application
                .starts_with(&format!("lockattr:{}@", waiter.pid())),
            "the waiter's own session: {before:#?}"
        );
        assert_eq!(
            (before.state.as_str(), before.wait_event_type.as_str()),
            ("active", "Lock"),
            "{wait}: {before:#?}"
        );
        assert_eq!(before.wait_event, "advisory", "{before:#?}");
        assert!(before.query.contains("pg_advisory_lock("), "{before:#?}");

        // The notice comes after about a second of waiting.
        let (notice, _) = waiter.kid.expect_stderr("waiting for");
        assert!(
            notice.contains(&format!("held by pid {}", holder.pid())),
            "{notice}"
        );
        let after = activity(&sql, session).expect("the waiter's session");
        assert_eq!(after, before, "{wait}: the waiting query was issued again");
        assert_eq!(sessions_on(&sql, key, false), [session], "{wait}");

        let released = holder.unlock();
        let granted = waiter.answer();
        granted.assert_held(wait);
        let took = granted.at.saturating_duration_since(released);
        eprintln!("{wait}: the waiter had the lock {took:?} after the holder let go");
        assert!(took < Duration::from_secs(1), "{wait}: took {took:?}");
        waiter.unlock();
    }
}

// ----------------------------------------------------------------- shared

/// Shared holders in two processes hold at once (the server lists both as
/// granted); an exclusive request is busy meanwhile, and holds once they
/// are gone; then a shared request is busy.
#[test]
fn shared_holders_overlap_and_exclude_an_exclusive_one() {
    let Some(url) = pg::shared("shared_holders_overlap_and_exclude_an_exclusive_one") else {
        return;
    };
    let name = common::unique_name("pg-shared");
    let key = lockattr::advisory_key(&name);
    let sql = Sql::connect(url);
    let mut a = Locker::start(url, &name);
    let mut b = Locker::start(url, &name);
    let mut c = Locker::start(url, &name);

    a.ask("lock-shared").assert_held("a, shared");
    b.ask("lock-shared").assert_held("b, shared, beside a");
    assert_eq!(sessions_on(&sql, key, true).len(), 2, "two shared holders");
    let busy = c.ask("lock");
    assert_eq!(busy.outcome, "BUSY", "{busy:#?}");
    assert!(
        busy.pid == Some(a.pid()) || busy.pid == Some(b.pid()),
        "names a shared holder: {busy:#?}"
    );

    a.unlock();
    b.unlock();
    c.lock_once_free("c, once both let go");
    a.ask("lock-shared")
        .assert_busy_by(c.pid(), "shared, beside an exclusive holder");
}

// ------------------------------------------------------------------ async

/// A line from stdin per message, read on a thread of its own.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A name made from the arguments maps to the key of the resolved name.
#[exclusive("pg-deploy-{env}")]
fn deploy(env: &str) -> Result<(), lockattr::Error> {
    say(format_args!("DEPLOYING {env}"));
    let _ = std::io::stdin().read_line(&mut String::new());
    Ok(())
}

fn deploy_role() {
    let env = std::env::var("LOCKATTR_TEST_ENV").expect("LOCKATTR_TEST_ENV");
    say("READY");
    match deploy(&env) {
        Ok(()) => say("DEPLOYED"),
        Err(err) => say(format_args!("DEPLOY ERR {err}")),
    }
}

#[exclusive(ASYNC)]
fn nested_in_async() -> Result<u64, lockattr::Error> {
    Lock::new(ASYNC).fencing_token()
}

/// Holds `ASYNC` across awaits until told `release`.
#[exclusive(ASYNC, wait = "30s")]
async fn hold_async(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Result<(), lockattr::Error> {
    let token = Lock::new(ASYNC).fencing_token()?;
    // A sync `#[exclusive]` call polled inside the task re-enters.
    let nested = nested_in_async()?;
    say(format_args!("ASYNC HELD {token} {nested}"));
    while let Some(line) = lines.recv().await {
        if line == "release" {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[tokio::main]
async fn async_hold_role() {
    let mut lines = stdin_lines();
    say("READY");
    match hold_async(&mut lines).await {
        Ok(()) => say("ASYNC RELEASED"),
        Err(err) => say(format_args!("ASYNC ERR {err}")),
    }
    while lines.recv().await.is_some() {}
}

#[exclusive(ASYNC, wait)]
async fn wait_async() -> Result<(), lockattr::Error> {
    Ok(())
}

#[exclusive(ASYNC)]
async fn try_async() -> Result<(), lockattr::Error> {
    Ok(())
}

/// Waits for `ASYNC` for at most LOCKATTR_TEST_MS under
/// `tokio::time::timeout`, which drops the wait, then stays alive and
/// answers `try` with a fresh attempt.
#[tokio::main]
async fn async_cancel_role() {
    let ms = std::env::var("LOCKATTR_TEST_MS").expect("milliseconds");
    let limit = Duration::from_millis(ms.parse().expect("milliseconds"));
    let mut lines = stdin_lines();
    say("READY");
    match tokio::time::timeout(limit, wait_async()).await {
        Err(_) => say("ASYNC TIMEDOUT"),
        Ok(Ok(())) => say("ASYNC HELD"),
        Ok(Err(err)) => say(format_args!("ASYNC ERR {err}")),
    }
    while let Some(line) = lines.recv().await {
        assert_eq!(line, "try");
        match try_async().await {
            Ok(()) => say("ASYNC HELD"),
            Err(err) => say(format_args!("ASYNC {}", failure(0, &err))),
        }
    }
}

/// An `#[exclusive]` `async fn` under `#[tokio::main]` holds the server's
/// lock across awaits: another process is busy, naming it; a sync
/// `#[exclusive]` call inside re-enters, with the same fencing token; the
/// lock is free once the future completes.
#[test]
fn an_async_fn_holds_across_awaits_under_tokio() {
    let Some(url) = pg::shared("an_async_fn_holds_across_awaits_under_tokio") else {
        return;
    };
    let db = Database::create(url, "pg-async-hold");
    let mut holder = Kid::role("async-hold", &[("LOCKATTR_URL", db.url())]);
    holder.expect("READY");
    let held = holder.expect("ASYNC HELD").0;
    let (token, nested) = held.split_once(' ').expect("two tokens");
    assert_eq!(token, nested, "the nested call re-entered the same hold");

    let mut other = Locker::start(db.url(), ASYNC.as_str());
    other
        .ask("lock")
        .assert_busy_by(holder.pid(), "beside an async holder");
    holder.send("release");
    holder.expect("ASYNC RELEASED");
    other.lock_once_free("the lock is free once the future completed");
}

/// Dropping an async wait (`tokio::time::timeout`) cancels its wait in the
/// server: the ungranted entry leaves `pg_locks` promptly while the waiter
/// lives on, and the waiter can lock again later. The cancelled wait's
/// session is closed, not kept: a cancel can reach the server after the
/// wait was granted, and closing is the one sure way to let go.
#[test]
fn cancelling_an_async_wait_cancels_it_in_the_server() {
    let Some(url) = pg::shared("cancelling_an_async_wait_cancels_it_in_the_server") else {
        return;
    };
    let db = Database::create(url, "pg-async-cancel");
    let key = lockattr::advisory_key(ASYNC.as_str());
    let sql = Sql::connect(db.url());
    let mut holder = Locker::start(db.url(), ASYNC.as_str());
    holder.ask("lock").assert_held("holder");

    // The wait must show in pg_locks before the timeout drops it: 8 s is
    // ample even on a busy machine, and the test does not wait for it to
    // pass before looking.
    let env = [("LOCKATTR_URL", db.url()), ("LOCKATTR_TEST_MS", "8000")];
    let mut waiter = Kid::role("async-cancel", &env);
    waiter.expect("READY");
    let session = waiter_on(&sql, key);
    let (_, timed_out) = waiter.expect("ASYNC TIMEDOUT");
    let gone = pg::until("the cancelled wait leaves pg_locks", || {
        let waiting = sessions_on(&sql, key, false);
        waiting.is_empty().then(Instant::now)
    });
    let took = gone.saturating_duration_since(timed_out);
    eprintln!("async wait dropped: its server-side wait ended within {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(waiter.ended().is_none(), "the waiter lives on");
    pg::until("the cancelled wait's session closes", || {
        activity(&sql, session).is_none().then_some(())
    });

    holder.unlock();
    let held = pg::until("the waiter locks once the holder let go", || {
        waiter.send("try");
        let line = waiter.expect("ASYNC").0;
        (line == "HELD").then_some(line)
    });
    assert_eq!(held, "HELD");
}

// --------------------------------------------------------- fencing tokens

/// Fencing tokens grow with every acquisition: across holds of one
/// process, across processes, and across a server restart. One hold has
/// one token, however often it is asked; a process without a hold gets
/// none.
#[test]
fn fencing_tokens_grow_across_holds_holders_and_restarts() {
    let test = "fencing_tokens_grow_across_holds_holders_and_restarts";
    if !pg::require_binaries(test) {
        return;
    }
    let cluster = Cluster::start("fencing");
    let url = cluster.url();
    let name = common::unique_name("pg-fence");
    let mut a = Locker::start(&url, &name);
    let mut b = Locker::start(&url, &name);
    let mut tokens = Vec::new();

    for _ in 0..2 {
        a.ask("lock").assert_held("a");
        tokens.push(a.token());
        a.unlock();
    }
    b.lock_once_free("b, once a let go");
    tokens.push(b.token());
    b.unlock();
    b.send("token");
    let refused = b.kid.expect("PG").0;
    assert!(
        refused.starts_with("ERR 0 Config ") && refused.contains("only to the holder"),
        "{refused}"
    );

    cluster.restart();
    a.ask("lock").assert_held("a, after the restart");
    tokens.push(a.token());
    a.unlock();
    drop(a);
    let mut c = Locker::start(&url, &name);
    c.lock_once_free("c, once a let go");
    tokens.push(c.token());

    eprintln!("fencing tokens: {tokens:?}");
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens must grow: {tokens:?}"
    );
}

// ------------------------------------------------------------ losing the lock

/// The server ending the holder's session (`pg_terminate_backend`) is a
/// lost lock: the holder says so in one loud line starting with its
/// program's name, `still_held` turns false (it was true before), and
/// another process gets the lock. The holder can lock again later.
#[test]
fn a_terminated_session_is_reported_as_a_lost_lock() {
    let Some(url) = pg::shared("a_terminated_session_is_reported_as_a_lost_lock") else {
        return;
    };
    let name = common::unique_name("pg-lost");
    let key = lockattr::advisory_key(&name);
    let sql = Sql::connect(url);
    let mut holder = Locker::start(url, &name);
    let mut other = Locker::start(url, &name);

    holder.ask("lock").assert_held("holder");
    assert!(holder.still_held(), "held before the server ends it");
    let session = holder_on(&sql, key);
    assert_eq!(
        sql.value(&format!("SELECT pg_terminate_backend({session})")),
        "t"
    );

    let program = std::env::current_exe().unwrap();
    let program = program.file_name().unwrap().to_string_lossy().into_owned();
    let (warning, _) = holder.kid.expect_stderr("exclusion may have been broken");
    assert!(
        warning.starts_with(&format!(
            "{program}: WARNING: exclusion may have been broken: "
        )),
        "{warning}"
    );
    for part in [
        format!("lock \"{name}\""),
        format!("PostgreSQL advisory key {key}"),
        "session ended".to_owned(),
    ] {
        assert!(warning.contains(&part), "{warning}");
    }
    assert!(!holder.still_held(), "lost, and says so");
    // The server tells the client before its backend exits and lets go.
    other.lock_once_free("another process, once the server let go");
    holder.unlock();
    holder
        .ask("lock")
        .assert_busy_by(other.pid(), "the old holder, on a new session");

    let finished = holder.kid.finish();
    let warnings = finished
        .stderr
        .lines()
        .filter(|line| line.contains("exclusion may have been broken"))
        .count();
    assert_eq!(warnings, 1, "one loud line: {}", finished.stderr);
}

/// A server restart between two holds ends the kept session: the next
/// call connects again and works, with no error and no warning (nothing
/// was held when it ended).
#[test]
fn a_restart_between_holds_reconnects() {
    if !pg::require_binaries("a_restart_between_holds_reconnects") {
        return;
    }
    let cluster = Cluster::start("restart");
    let url = cluster.url();
    let name = common::unique_name("pg-restart");
    let mut a = Locker::start(&url, &name);
    let mut b = Locker::start(&url, &name);
    a.ask("lock").assert_held("a, before");
    a.unlock();
    b.lock_once_free("b, once a let go");
    b.unlock();

    cluster.restart();
    a.ask("lock").assert_held("a, after the restart");
    b.ask("lock")
        .assert_busy_by(a.pid(), "b, after the restart");
    a.unlock();
    for locker in [a, b] {
        let finished = locker.kid.finish();
        assert!(finished.status.success(), "{finished:?}");
        assert!(!finished.stderr.contains("WARNING"), "{}", finished.stderr);
    }
}

// ------------------------------------------------- servers that cannot hold

/// PgBouncer between a private server and its clients, as an unprivileged
/// user on a loopback port: `tx` pools transactions, `session` sessions.
struct Pgbouncer {
    kid: Kid,
    port: u16,
    dir: PathBuf,
}

impl Pgbouncer {
    fn start(cluster: &Cluster) -> Pgbouncer {
        let dir = std::env::temp_dir().join(common::unique_name("lockattr-pgbouncer"));
        std::fs::create_dir(&dir).expect("pgbouncer's directory");
        let port = pg::free_port();
        let backend = format!("host=127.0.0.1 port={} dbname=postgres", cluster.port());
        let ini = format!(
            "[databases]\n\
             tx = {backend} pool_mode=transaction\n\
             session = {backend} pool_mode=session\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = session\n\
             ignore_startup_parameters = extra_float_digits\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("users.txt");
        pg::chown_to_postgres(&dir);
        let mut cmd = Command::new("pgbouncer");
        if common::is_root() {
            cmd.args(["-u", "postgres"]); // it refuses to run as root
        }
        cmd.arg(dir.join("pgbouncer.ini"));
        let kid = Kid::start(cmd);
        pg::until("pgbouncer listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Pgbouncer { kid, port, dir }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        self.kid.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The check that refuses poolers takes a key no other session can be
/// holding: another client holding the key an earlier version derived from
/// the process id (as a process with the same pid on another host did,
/// probing at the same moment) does not make a server look like a pooler.
#[test]
fn the_pooler_check_is_not_fooled_by_another_sessions_key() {
    let Some(url) = pg::shared("the_pooler_check_is_not_fooled_by_another_sessions_key") else {
        return;
    };
    let name = common::unique_name("pg-probe");
    let sql = Sql::connect(url);
    let mut locker = Locker::start(url, &name);
    let old_key = lockattr::advisory_key(&format!("lockattr-probe-{}", locker.pid()));
    sql.execute(&format!("SELECT pg_advisory_lock({old_key})"));
    locker
        .ask("lock")
        .assert_held("the first lock of a process");
    locker.unlock();
    sql.execute(&format!("SELECT pg_advisory_unlock({old_key})"));
}

/// PgBouncer in transaction mode cannot keep a session's lock to that
/// session: every lock is refused with an error that names the pooler.
/// In session mode, locks work and exclude as on the server itself.
#[test]
fn pgbouncer_in_transaction_mode_is_refused_session_mode_works() {
    let test = "pgbouncer_in_transaction_mode_is_refused_session_mode_works";
    if !pg::require_binaries(test) || !common::require_command(test, "pgbouncer") {
        return;
    }
    let cluster = Cluster::start("pgbouncer");
    let bouncer = Pgbouncer::start(&cluster);
    let name = common::unique_name("pg-bouncer");

    let mut refused = Locker::start(&bouncer.url("tx"), &name);
    for request in ["lock", "wait-for 100"] {
        let answer = refused.ask(request);
        let message = answer.assert_err("through a transaction pool");
        assert_eq!(answer.kind.as_deref(), Some("Io"), "{message}");
        for part in ["PgBouncer", "transaction", "pool_mode", "session mode"] {
            assert!(message.contains(part), "names the pooler: {message}");
        }
    }

    let session = bouncer.url("session");
    let mut a = Locker::start(&session, &name);
    let mut b = Locker::start(&session, &name);
    a.ask("lock").assert_held("a, through a session pool");
    b.ask("lock")
        .assert_busy_by(a.pid(), "b, through a session pool");
    a.unlock();
    b.lock_once_free("b, once a let go");
}

/// A read-only standby (`pg_basebackup -R` of a private primary) is
/// refused: its advisory locks are not seen by the primary.
#[test]
fn a_standby_is_refused() {
    if !pg::require_binaries("a_standby_is_refused") {
        return;
    }
    let primary = Cluster::start("primary");
    let standby = Cluster::standby_of(&primary, "standby");
    let sql = Sql::connect(&standby.url());
    assert_eq!(sql.value("SELECT pg_is_in_recovery()"), "t", "a standby");

    let name = common::unique_name("pg-standby");
    let mut refused = Locker::start(&standby.url(), &name);
    let answer = refused.ask("lock");
    let message = answer.assert_err("on a standby");
    assert!(message.contains("read-only standby"), "{message}");
    assert!(message.contains("primary"), "{message}");
    Locker::start(&primary.url(), &name)
        .ask("lock")
        .assert_held("on the primary");
}

// ---------------------------------------------------------------- sqlx's key

/// A plain SQL client (as a service using sqlx's `PgAdvisoryLock::new(NAME)`
/// would) holding `lockattr::advisory_key(NAME)` makes lockattr busy,
/// naming that client's session; lockattr holding makes
/// `pg_try_advisory_lock(key)` false from plain SQL, shared too.
#[test]
fn plain_sql_on_the_sqlx_key_and_lockattr_exclude_each_other() {
    let Some(url) = pg::shared("plain_sql_on_the_sqlx_key_and_lockattr_exclude_each_other") else {
        return;
    };
    // The test vector of sqlx's documentation.
    assert_eq!(
        lockattr::advisory_key("my first Postgres advisory lock!"),
        -5560419505042474287
    );
    let name = common::unique_name("pg-sqlx");
    let key = lockattr::advisory_key(&name);
    let service = Sql::connect(url);
    service.execute("SET application_name = 'billing-service'");
    let service_pid = service.backend_pid();
    let mut locker = Locker::start(url, &name);

    service.execute(&format!("SELECT pg_advisory_lock({key})"));
    let busy = locker.ask("lock");
    assert_eq!(busy.outcome, "BUSY", "{busy:#?}");
    assert_eq!(busy.pid, None, "not a lockattr process: {busy:#?}");
    assert_eq!(busy.backend, Some(service_pid), "{busy:#?}");
    assert!(
        busy.message.contains(&format!(
            "held by billing-service (database session {service_pid}"
        )),
        "{}",
        busy.message
    );
    assert_eq!(
        service.value(&format!("SELECT pg_advisory_unlock({key})")),
        "t"
    );

    locker
        .ask("lock")
        .assert_held("lockattr, once the service let go");
    for function in ["pg_try_advisory_lock", "pg_try_advisory_lock_shared"] {
        let taken = service.value(&format!("SELECT {function}({key})"));
        assert_eq!(taken, "f", "{function} while lockattr holds");
    }
    locker.unlock();
    pg::until("plain SQL gets the key once lockattr let go", || {
        let taken = service.value(&format!("SELECT pg_try_advisory_lock({key})"));
        (taken == "t").then_some(())
    });
}

/// The few lines an operator can run to compute a key without Rust, as
/// `advisory_key`'s documentation gives them, print what lockattr uses.
#[test]
fn the_documented_recipe_computes_the_key() {
    if !common::require_command("the_documented_recipe_computes_the_key", "python3") {
        return;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("lockattr/src/pg/mod.rs");
    let source = std::fs::read_to_string(source).expect("lockattr/src/pg/mod.rs");
    let recipe: Vec<&str> = source
        .lines()
        .map(|line| {
            line.trim_start()
                .trim_start_matches("///")
                .trim_start_matches(' ')
        })
        .skip_while(|line| !line.starts_with("python3 -c"))
        .take_while(|line| !line.starts_with("```"))
        .collect();
    assert!(!recipe.is_empty(), "the recipe is documented");
    let name = "my first Postgres advisory lock!";
    let script = recipe.join("\n").replace("build-deploy", "\"$1\"");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script, "sh", name]);
    let out = common::output(cmd);
    assert!(out.status.success(), "{script}: {out:?}");
    assert_eq!(out.stdout.trim(), lockattr::advisory_key(name).to_string());
}

// ------------------------------------------------------------------- TLS

/// Makes a CA and a server certificate for `localhost` and 127.0.0.1 in
/// `dir` with openssl, and another CA that signed nothing here.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir);
        pg::run(cmd).unwrap_or_else(|why| panic!("{why}"));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for ca in ["ca", "other-ca"] {
        let subject = format!("/CN=lockattr test {ca}");
        let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subject];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &crt]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&args);
    }
    let mut args = vec!["req", "-nodes", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n\
         basicConstraints = CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n",
    )
    .expect("server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}

/// TLS with libpq's modes on a private server with `ssl = on` and a
/// certificate for `localhost` and 127.0.0.1 from a CA of the test's own:
/// `require` encrypts; `verify-full` with that CA works for `localhost`;
/// for a host the certificate does not name, `verify-full` fails with a
/// clear error and `verify-ca` works; a wrong CA fails.
#[test]
fn tls_modes_check_what_they_promise() {
    let test = "tls_modes_check_what_they_promise";
    if !pg::require_binaries(test) || !common::require_command(test, "openssl") {
        return;
    }
    let cluster = Cluster::start("tls");
    let certs = cluster.dir().join("certs");
    std::fs::create_dir(&certs).expect("the certificates' directory");
    make_certificates(&certs);
    for file in ["server.crt", "server.key"] {
        pg::chown_to_postgres(&certs.join(file));
    }
    cluster.configure(&format!(
        "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
        certs.display()
    ));
    cluster.restart();
    let sql = Sql::connect(&cluster.url());
    let port = cluster.port();
    let ca = certs.join("ca.crt");
    let other_ca = certs.join("other-ca.crt");
    let at =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");
    // The certificate names localhost and 127.0.0.1, not db.test; hostaddr
    // reaches the same server under that name.
    let unnamed = "db.test";
    let via = "hostaddr=127.0.0.1";

    let works = [
        at("127.0.0.1", "sslmode=require"),
        at(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        ),
        at(
            unnamed,
            &format!("{via}&sslmode=verify-ca&sslrootcert={}", ca.display()),
        ),
    ];
    for url in &works {
        let name = common::unique_name("pg-tls");
        let mut locker = Locker::start(url, &name);
        locker.ask("lock").assert_held(url);
        let session = holder_on(&sql, lockattr::advisory_key(&name));
        let encrypted = sql.value(&format!(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = {session}"
        ));
        assert_eq!(encrypted, "t", "{url}: the session is encrypted");
    }

    let fails = [
        (
            at(
                unnamed,
                &format!("{via}&sslmode=verify-full&sslrootcert={}", ca.display()),
            ),
            "not valid for name",
        ),
        (
            at(
                "localhost",
                &format!("sslmode=verify-ca&sslrootcert={}", other_ca.display()),
            ),
            "UnknownIssuer",
        ),
        (
            at(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
            ),
            "UnknownIssuer",
        ),
    ];
    for (url, why) in &fails {
        let mut locker = Locker::start(url, &common::unique_name("pg-tls"));
        let answer = locker.ask("lock");
        let message = answer.assert_err(url);
        eprintln!("{url}: {message}");
        assert!(message.contains("cannot connect to"), "{message}");
        assert!(message.contains("certificate"), "{message}");
        assert!(message.contains(why), "{url}: {message}");
    }
}

// ---------------------------------------------- a build without the feature

/// `target/` of this build (this test binary is `target/debug/deps/...`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("target/debug/deps/NAME")
        .to_owned()
}

/// A program built with lockattr's default features, so without
/// `postgres` (`tests/no-postgres`, outside the workspace): with
/// `LOCKATTR_URL` set every lock is a `Config` error that names the
/// feature, never a local lock file; and lockattr's default dependencies
/// pull in no async runtime, no database client and no TLS.
#[test]
fn without_the_feature_lockattr_url_is_an_error_and_nothing_async_is_built() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/no-postgres/Cargo.toml");
    let cargo = |command: &str| {
        let mut cmd = Command::new(env!("CARGO"));
        // The lock file is committed and the workspace's build fetched
        // every crate it names.
        cmd.args([command, "--offline", "--manifest-path"])
            .arg(&manifest);
        cmd.env_remove("CARGO_TARGET_DIR");
        cmd
    };

    let mut tree = cargo("tree");
    tree.args(["-e", "normal", "--prefix", "none"]);
    let tree = common::output(tree);
    assert!(tree.status.success(), "cargo tree: {tree:?}");
    let crates: Vec<&str> = tree
        .stdout
        .lines()
        .filter_map(|line| line.split(' ').next())
        .collect();
    assert!(crates.contains(&"lockattr"), "{}", tree.stdout);
    for absent in [
        "tokio",
        "tokio-postgres",
        "rustls",
        "tokio-rustls",
        "hkdf",
        "sha2",
    ] {
        assert!(!crates.contains(&absent), "{absent} in:\n{}", tree.stdout);
    }

    let target = target_dir().join("no-postgres");
    let mut build = cargo("build");
    build.arg("--target-dir").arg(&target);
    let built = common::output(build);
    assert!(built.status.success(), "cargo build: {}", built.stderr);

    let dir = common::shared_dir("no-postgres");
    let mut run = Command::new(target.join("debug/lockattr-no-postgres"));
    run.env("LOCKATTR_URL", "postgres://ci:s3cret@127.0.0.1:1/locks")
        .env("LOCKATTR_DIR", &dir);
    let out = common::output(run);
    let outcome = out
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("OUTCOME "))
        .unwrap_or_else(|| panic!("no outcome: {out:?}"));
    assert!(outcome.starts_with("Config "), "{outcome}");
    assert!(outcome.contains("`postgres` feature"), "{outcome}");
    assert!(!outcome.contains("s3cret"), "leaks the password: {outcome}");
    let created: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(created.is_empty(), "no local lock file: {created:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ the example

/// The README's tool across processes on a server: `deploy` while `build`
/// runs exits 75 and names the builder's pid and host; so does a second
/// `build`, whose line names PostgreSQL, the key and the holder.
#[test]
fn the_pipeline_example_excludes_across_processes() {
    let test = "the_pipeline_example_excludes_across_processes";
    let Some(url) = pg::shared(test) else {
        return;
    };
    let pipeline = match common::example("pipeline") {
        Ok(pipeline) => pipeline,
        Err(why) => {
            common::loud(&format!(
                "SKIPPED {test}: {why}; `cargo test --workspace` builds it"
            ));
            return;
        }
    };
    let db = Database::create(url, "pg-pipeline");
    let run = |command: &str| {
        let mut cmd = Command::new(&pipeline);
        cmd.arg(command).env("LOCKATTR_URL", db.url());
        cmd
    };
    let mut build = Kid::start(run("build"));
    // The build holds the lock for three seconds after this line.
    build.expect_within("build:", Duration::from_secs(30));

    let deploy = common::output(run("deploy"));
    assert_eq!(deploy.status.code(), Some(75), "{deploy:?}");
    let holder = format!("held by pid {} on host {}", build.pid(), hostname());
    assert!(deploy.stderr.contains(&holder), "{}", deploy.stderr);
    assert!(
        deploy.stderr.contains("PostgreSQL advisory key"),
        "{}",
        deploy.stderr
    );

    let second = common::output(run("build"));
    assert_eq!(second.status.code(), Some(75), "{second:?}");
    let key = lockattr::advisory_key("pipeline-build-deploy");
    let line = format!(
        "pipeline: lock \"pipeline-build-deploy\" (PostgreSQL advisory key {key} \
         on {}) is busy: {holder}",
        pg::label(db.url())
    );
    assert!(second.stderr.starts_with(&line), "{}", second.stderr);
    assert!(!second.stdout.contains("compiling"), "{}", second.stdout);
    assert!(build.finish().status.success());
}

// ------------------------------------------------------------------ no server

/// A server nobody answers at is an error that says why (the OS's
/// "connection refused"), never busy and never a local lock.
#[test]
fn an_unreachable_server_is_an_error_that_says_why() {
    let url = format!("postgres://ci:s3cret@127.0.0.1:{}/locks", pg::free_port());
    let mut locker = Locker::start(&url, &common::unique_name("pg-unreachable"));
    for request in ["lock", "wait-for 100"] {
        let answer = locker.ask(request);
        let message = answer.assert_err(request);
        assert_eq!(answer.kind.as_deref(), Some("Io"), "{message}");
        assert!(!message.contains("s3cret"), "leaks the password: {message}");
        assert!(
            message.contains(&format!("cannot connect to {}", pg::label(&url))),
            "{message}"
        );
        assert!(
            message.contains("Connection refused"),
            "says why: {message}"
        );
    }
}

/// `#[exclusive("pg-deploy-{env}")]` on the PostgreSQL backend takes the
/// key of the resolved name, the one `LockName::from_template` and sqlx
/// give: plain SQL finds `prod`'s key taken and `staging`'s free.
#[test]
fn a_name_from_arguments_locks_the_key_of_the_resolved_name() {
    let Some(url) = pg::shared("a_name_from_arguments_locks_the_key_of_the_resolved_name") else {
        return;
    };
    let db = pg::Database::create(url, "pg-template");
    let mut cmd = common::spawn_role("deploy");
    cmd.env("LOCKATTR_URL", db.url())
        .env("LOCKATTR_TEST_ENV", "prod/eu");
    let mut deployer = Kid::start(cmd);
    deployer.expect("READY");
    deployer.expect("DEPLOYING");
    let name = lockattr::LockName::from_template("pg-deploy-{env}", &[("env", &"prod/eu")])
        .expect("a name");
    assert_eq!(name.as_str(), "pg-deploy-prod_2Feu");
    let sql = Sql::connect(db.url());
    let prod = lockattr::advisory_key(name.as_str());
    let staging = lockattr::advisory_key("pg-deploy-staging");
    assert_eq!(
        sql.value(&format!("SELECT pg_try_advisory_lock({prod})")),
        "f"
    );
    assert_eq!(
        sql.value(&format!("SELECT pg_try_advisory_lock({staging})")),
        "t"
    );
    deployer.send("");
    deployer.expect("DEPLOYED");
}
