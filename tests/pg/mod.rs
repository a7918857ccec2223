//! PostgreSQL servers for the tests of the PostgreSQL backend, and a plain
//! SQL session to look at them with.
//!
//! - [`shared`]: the server of the whole run. CI starts one
//!   (`tests/pg/cluster start`) and names it in [`URL_VAR`]; without that
//!   variable, this test process starts one of its own on first use and
//!   stops it at exit. Tests on it lock names of their own
//!   (`common::unique_name`), or work in a [`Database`] of their own when
//!   their lock names are fixed (an attribute's literal): advisory locks
//!   are per database, so two runs on one server never meet.
//! - [`Cluster`]: a private server for a test that restarts or reconfigures
//!   it (TLS, a standby, a pooler in front), in a temporary directory, on a
//!   free loopback port; stopped and removed on drop, also on panic.
//!
//! Without [`URL_VAR`] and without PostgreSQL's binaries, every test that
//! needs a server says loudly that it skipped.
#![allow(dead_code)] // each test binary uses a different part

use crate::common;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The URL of the run's server, set by `.ci/run`.
pub const URL_VAR: &str = "LOCKATTR_TEST_PG_URL";

/// `tests/pg/cluster`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/cluster")
}

/// PostgreSQL's server binaries (`initdb`, `pg_ctl`, `pg_basebackup`), as
/// `tests/pg/cluster` finds them.
pub fn bindir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| dir.join("initdb").is_file()) {
        return Some(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| dir.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|dir| {
        let version = dir.parent().and_then(Path::file_name);
        version.and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    dirs.pop()
}

/// Whether this host can start a private server; says loudly when not.
pub fn require_binaries(test: &str) -> bool {
    if bindir().is_some() {
        return true;
    }
    common::loud(&format!(
        "SKIPPED {test}: no PostgreSQL server binaries (apt-get install postgresql); \
         .ci/run installs them"
    ));
    false
}

/// The run's server: [`URL_VAR`], or one this process starts (once) and
/// stops at exit. `None` after a loud skip line.
pub fn shared(test: &str) -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    static OWN: OnceLock<Cluster> = OnceLock::new();
    let url = URL.get_or_init(|| {
        if let Some(url) = std::env::var(URL_VAR).ok().filter(|url| !url.is_empty()) {
            return Some(url);
        }
        bindir()?;
        let cluster = OWN.get_or_init(|| Cluster::start("shared"));
        extern "C" fn stop_own() {
            if let Some(cluster) = OWN.get() {
                cluster.remove();
            }
        }
        // SAFETY: registers a function that takes nothing and returns.
        unsafe { libc::atexit(stop_own) };
        Some(cluster.url())
    });
    if url.is_none() {
        common::loud(&format!(
            "SKIPPED {test}: no PostgreSQL server: set {URL_VAR}=postgres://... or install \
             PostgreSQL (apt-get install postgresql); .ci/run does both"
        ));
    }
    url.as_deref()
}

// ------------------------------------------------------------ URLs

/// `postgres://user@host:port/db?query` split into the part before the
/// database, the database, and the query (with its `?`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let (base, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    match base[scheme_end..].find('/') {
        Some(at) => {
            let (server, db) = base.split_at(scheme_end + at);
            (server, &db[1..], query)
        }
        None => (base, "", query),
    }
}

/// `url` with another database.
pub fn with_database(url: &str, database: &str) -> String {
    let (server, _, query) = split_url(url);
    format!("{server}/{database}{query}")
}

/// `url` with `param=value` added to its query.
pub fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// How lockattr's messages name the server of `url`: `host:port/database`.
pub fn label(url: &str) -> String {
    let (server, database, _) = split_url(url);
    let authority = &server[server.find("://").map_or(0, |at| at + 3)..];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = match host_port.contains(':') {
        true => host_port.to_owned(),
        false => format!("{host_port}:5432"),
    };
    format!("{host_port}/{database}")
}

// ------------------------------------------------------- a database of its own

/// A database of its own on a server, for a test whose lock names are
/// fixed (advisory locks are per database); dropped with the test.
pub struct Database {
    url: String,
    admin_url: String,
    name: String,
}

impl Database {
    pub fn create(server_url: &str, tag: &str) -> Database {
        let name = common::unique_name(tag).replace('-', "_");
        let admin = Sql::connect(server_url);
        admin.execute(&format!("CREATE DATABASE {name}"));
        Database {
            url: with_database(server_url, &name),
            admin_url: server_url.to_owned(),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // FORCE: a child that is still connected is ended with it.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Ok(admin) = Sql::try_connect(&self.admin_url) {
            let _ = admin.try_execute(&sql);
        }
    }
}

// ------------------------------------------------------------ a private server

/// A throw-away server of one test: `tests/pg/cluster` in a temporary
/// directory, on a free loopback port. Stopped and removed on drop.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    /// An flock on the directory while it lives, so that `.ci/run` can tell
    /// it from one a killed test left behind.
    _alive: std::fs::File,
}

impl Cluster {
    /// Starts a fresh server; panics if it cannot (the caller checked
    /// [`require_binaries`]).
    pub fn start(tag: &str) -> Cluster {
        let mut last = String::new();
        // A free port can be taken by someone else before the server binds
        // it: then try another.
        for _ in 0..3 {
            let (dir, alive) = temp_dir(tag);
            let port = free_port();
            let started = run(cluster_command("start", &dir, &[&port.to_string()]));
            match started {
                Ok(()) => {
                    return Cluster {
                        dir,
                        port,
                        _alive: alive,
                    };
                }
                Err(why) => {
                    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                    last = format!("{why}\n{log}");
                    let _ = run(cluster_command("stop", &dir, &[]));
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        panic!("cannot start a PostgreSQL cluster: {last}");
    }

    /// A read-only standby of `primary`: `pg_basebackup -R` into a new
    /// directory, started on a port of its own.
    pub fn standby_of(primary: &Cluster, tag: &str) -> Cluster {
        let (dir, alive) = temp_dir(tag);
        chown_to_postgres(&dir);
        let bindir = bindir().expect("PostgreSQL binaries");
        let mut backup = as_postgres(&bindir.join("pg_basebackup"));
        backup
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
            .arg("-p")
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(dir.join("data"));
        run(backup).unwrap_or_else(|why| panic!("pg_basebackup: {why}"));
        let port = free_port();
        let standby = Cluster {
            dir,
            port,
            _alive: alive,
        };
        // The copy has the primary's settings: give it its own port and
        // socket directory (later lines win).
        standby.configure(&format!(
            "port = {port}\nunix_socket_directories = '{}'\n",
            standby.dir.display()
        ));
        standby.start_again();
        standby
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory (owned by the server's user once started).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `lines` to `postgresql.conf`; takes effect at the next
    /// start.
    pub fn configure(&self, lines: &str) {
        use std::io::Write;
        let conf = self.dir.join("data/postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap_or_else(|err| panic!("open {}: {err}", conf.display()));
        file.write_all(lines.as_bytes())
            .expect("append to postgresql.conf");
    }

    /// Stops the server (fast: every session is ended).
    pub fn stop(&self) {
        run(cluster_command("stop", &self.dir, &[])).expect("stop the cluster");
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) {
        let started = run(cluster_command(
            "start",
            &self.dir,
            &[&self.port.to_string()],
        ));
        if let Err(why) = started {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!("cannot start the cluster again: {why}\n{log}");
        }
    }

    /// A clean restart: every session ends, every committed transaction
    /// stays.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    fn remove(&self) {
        let _ = run(cluster_command("stop", &self.dir, &[]));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `$TMPDIR/lockattr-pg-TAG-PID-N`, made fresh and flocked while it lives.
fn temp_dir(tag: &str) -> (PathBuf, std::fs::File) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lockattr-pg-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap_or_else(|err| panic!("mkdir {}: {err}", dir.display()));
    let alive = std::fs::File::open(&dir).expect("open the cluster's directory");
    rustix::fs::flock(&alive, rustix::fs::FlockOperation::LockExclusive)
        .expect("flock the cluster's directory");
    (dir, alive)
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

fn cluster_command(command: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(script());
    cmd.arg(command).arg(dir).args(args);
    cmd
}

/// `program` as the server's user: `postgres` when we are root.
pub fn as_postgres(program: &Path) -> Command {
    if common::is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Gives `path` to the server's user (when we are root).
pub fn chown_to_postgres(path: &Path) {
    if common::is_root() {
        let mut cmd = Command::new("chown");
        cmd.arg("postgres:").arg(path);
        run(cmd).expect("chown to postgres");
    }
}

/// Runs `cmd` to its end; `Err` with its output when it fails.
pub fn run(cmd: Command) -> Result<(), String> {
    let described = format!("{cmd:?}");
    let out = common::output(cmd);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{described}: {}\n{}{}",
            out.status, out.stdout, out.stderr
        ))
    }
}

// ------------------------------------------------------------ plain SQL

/// A plain SQL session of the test's own (tokio-postgres, no TLS), to look
/// at `pg_locks` and `pg_stat_activity` and to hold keys as another client
/// would.
pub struct Sql {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

/// A row of text values.
pub type Row = Vec<Option<String>>;

impl Sql {
    pub fn connect(url: &str) -> Sql {
        Sql::try_connect(url).unwrap_or_else(|err| panic!("connect to {}: {err}", label(url)))
    }

    pub fn try_connect(url: &str) -> Result<Sql, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let connected = runtime.block_on(async {
            let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
            let mut config = config;
            config.connect_timeout(Duration::from_secs(10));
            config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{e}"))
        });
        let (client, connection) = connected?;
        runtime.spawn(connection);
        Ok(Sql { runtime, client })
    }

    pub fn try_rows(&self, sql: &str) -> Result<Vec<Row>, String> {
        let messages = self
            .runtime
            .block_on(self.client.simple_query(sql))
            .map_err(|err| match err.as_db_error() {
                Some(db) => format!("{} ({})", db.message(), db.code().code()),
                None => err.to_string(),
            })?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    pub fn rows(&self, sql: &str) -> Vec<Row> {
        self.try_rows(sql)
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// The first value of the first row.
    pub fn value(&self, sql: &str) -> String {
        let rows = self.rows(sql);
        rows.first()
            .and_then(|row| row.first().cloned().flatten())
            .unwrap_or_else(|| panic!("{sql}: no value"))
    }

    pub fn try_execute(&self, sql: &str) -> Result<(), String> {
        self.try_rows(sql).map(drop)
    }

    pub fn execute(&self, sql: &str) {
        self.rows(sql);
    }

    /// This session's server process.
    pub fn backend_pid(&self) -> u32 {
        self.value("SELECT pg_backend_pid()")
            .parse()
            .expect("a pid")
    }
}

/// Polls `probe` until it gives a value, for at most [`common::PATIENCE`]:
/// a wait for an event the server shows (`pg_locks`), not for time.
pub fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            start.elapsed() < common::PATIENCE,
            "{what}: not within {:?}",
            common::PATIENCE
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_taken_apart() {
        let url = "postgres://postgres@127.0.0.1:5544/postgres?sslmode=require";
        assert_eq!(
            super::with_database(url, "t1"),
            "postgres://postgres@127.0.0.1:5544/t1?sslmode=require"
        );
        assert_eq!(super::label(url), "127.0.0.1:5544/postgres");
        assert_eq!(super::label("postgres://u:pw@db/locks"), "db:5432/locks");
    }
}
