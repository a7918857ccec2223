//! Locks across hosts: PostgreSQL session advisory locks (feature
//! `postgres`, chosen by `LOCKATTR_URL=postgres://...`).
//!
//! A session advisory lock behaves like flock(2): it belongs to a
//! connection, the server lets go of it when the session ends, and a waiter
//! queues in the server. One connection per lock (kept between holds, as
//! the file backend keeps its descriptor) is that lock's session; one more
//! per process looks up holders.

mod runtime;
mod session;
mod tls;

pub(crate) use session::{Cancel, Session};

use crate::error::Holder;
use crate::process;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tls::{Tls, Verify};
use tokio_postgres::Client;

/// The advisory key of a lock name: exactly what sqlx's
/// `PgAdvisoryLock::new(name)` derives, so that a service guarding a job
/// with sqlx and a tool using lockattr exclude each other on the same name.
/// HKDF-SHA256 with the name as input key material, no salt, sqlx's info
/// string, and the first 8 bytes of output as a little-endian `i64`.
///
/// An operator can compute it without Rust:
///
/// ```text
/// python3 -c 'import hmac,hashlib,sys
/// prk = hmac.new(bytes(32), sys.argv[1].encode(), hashlib.sha256).digest()
/// okm = hmac.new(prk, b"SQLx (Rust) Postgres advisory lock\x01", hashlib.sha256).digest()
/// print(int.from_bytes(okm[:8], "little", signed=True))' build-deploy
/// ```
pub fn advisory_key(name: &str) -> i64 {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, name.as_bytes());
    let mut key = [0u8; 8];
    hkdf.expand(b"SQLx (Rust) Postgres advisory lock", &mut key)
        .expect("8 bytes are far below HKDF's limit");
    i64::from_le_bytes(key)
}

/// The `(classid, objid)` under which `pg_locks` lists a bigint key
/// (`objsubid` 1).
fn key_parts(key: i64) -> (u32, u32) {
    let key = key as u64;
    ((key >> 32) as u32, key as u32)
}

// How a lost holder is told, and how fast the server lets go (README:
// "Losing the lock"). The holder learns first: it pings every HEARTBEAT
// while it holds, and its kernel gives up on an unanswered ping after
// CLIENT_USER_TIMEOUT, so it knows within HEARTBEAT + CLIENT_USER_TIMEOUT
// (8 s) of a cut. The server probes an idle connection after
// SERVER_KEEPALIVE_IDLE and gives up after SERVER_KEEPALIVE_COUNT probes
// SERVER_KEEPALIVE_INTERVAL apart, or after SERVER_USER_TIMEOUT of
// unacknowledged data: since the last ping came at most HEARTBEAT before
// the cut, that is at least 14 s after it, and at most 16 s.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
const CLIENT_USER_TIMEOUT: Duration = Duration::from_secs(6);
const CLIENT_KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const CLIENT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const CLIENT_KEEPALIVE_RETRIES: u32 = 3;
const SERVER_KEEPALIVE_IDLE: u32 = 10;
const SERVER_KEEPALIVE_INTERVAL: u32 = 2;
const SERVER_KEEPALIVE_COUNT: u32 = 3;
const SERVER_USER_TIMEOUT_MS: u32 = 16_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first half of the two-part key a session takes to check that the
/// server keeps it to that session ("lock" in ASCII); the second half is
/// the session's backend pid.
const PROBE: i32 = 0x6c6f_636b;

/// The server `LOCKATTR_URL` names, and how to reach it.
pub(crate) struct Server {
    config: tokio_postgres::Config,
    tls: Tls,
    /// `host:port/database`, for messages: never the password. Without a
    /// database in the URL it is the user's name, as the server takes it
    /// (keys are per database, so the message says which).
    label: String,
    /// Whether the server keeps a session's locks for that session alone
    /// (no transaction pooler, no standby), checked once per process.
    checked: Mutex<Option<(u32, Result<(), String>)>>,
    /// The connection that looks up holders, per process.
    monitor: Mutex<Option<(u32, Arc<Client>)>>,
}

impl Server {
    /// Parses `LOCKATTR_URL`. Besides what tokio-postgres reads, it takes
    /// libpq's `sslmode=verify-ca|verify-full` and `sslrootcert`.
    pub(crate) fn from_url(url: &str) -> Result<Server, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut verify = Verify::Nothing;
        let mut mode = tokio_postgres::config::SslMode::Prefer;
        let mut root_cert = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    (mode, verify) = match value {
                        "disable" => (tokio_postgres::config::SslMode::Disable, Verify::Nothing),
                        "prefer" => (tokio_postgres::config::SslMode::Prefer, Verify::Nothing),
                        "require" => (tokio_postgres::config::SslMode::Require, Verify::Nothing),
                        "verify-ca" => (tokio_postgres::config::SslMode::Require, Verify::Chain),
                        "verify-full" => (
                            tokio_postgres::config::SslMode::Require,
                            Verify::ChainAndHost,
                        ),
                        other => {
                            return Err(format!(
                                "LOCKATTR_URL: unknown sslmode `{other}` (disable, prefer, \
                                 require, verify-ca or verify-full)"
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                "sslcert" | "sslkey" => {
                    return Err(format!(
                        "LOCKATTR_URL: `{key}` (client certificates) is not supported; \
                         authenticate with a password or trust"
                    ));
                }
                _ => kept.push(pair),
            }
        }
        let url = match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        };
        let mut config: tokio_postgres::Config = url.parse().map_err(|err| {
            // tokio-postgres's message names the part; never echo the URL.
            format!("LOCKATTR_URL cannot be parsed: {err}")
        })?;
        if verify != Verify::Nothing && root_cert.is_none() {
            return Err(
                "LOCKATTR_URL: sslmode=verify-ca and verify-full need sslrootcert=/path/to/ca.pem"
                    .to_owned(),
            );
        }
        let tls = Tls::new(verify, root_cert.as_deref())?;
        config
            .ssl_mode(mode)
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(CLIENT_KEEPALIVE_IDLE)
            .keepalives_interval(CLIENT_KEEPALIVE_INTERVAL)
            .keepalives_retries(CLIENT_KEEPALIVE_RETRIES)
            .tcp_user_timeout(CLIENT_USER_TIMEOUT);
        let label = label(&config);
        Ok(Server {
            config,
            tls,
            label,
            checked: Mutex::new(None),
            monitor: Mutex::new(None),
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Opens a session named `application_name`, set up for holding locks:
    /// no idle timeouts, fast loss detection on the server's side too.
    async fn connect(
        &self,
        application_name: &str,
        on_end: impl FnOnce(Result<(), String>) + Send + 'static,
    ) -> Result<Client, String> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|err| format!("cannot connect to {}: {}", self.label, describe(&err)))?;
        tokio::spawn(async move {
            on_end(connection.await.map_err(|err| describe(&err)));
        });
        let setup = format!(
            "SELECT set_config(name, value, false) FROM (VALUES \
             ('idle_session_timeout', '0'), ('idle_in_transaction_session_timeout', '0'), \
             ('statement_timeout', '0'), ('lock_timeout', '0'), \
             ('tcp_keepalives_idle', '{SERVER_KEEPALIVE_IDLE}'), \
             ('tcp_keepalives_interval', '{SERVER_KEEPALIVE_INTERVAL}'), \
             ('tcp_keepalives_count', '{SERVER_KEEPALIVE_COUNT}'), \
             ('tcp_user_timeout', '{SERVER_USER_TIMEOUT_MS}')) AS s(name, value) \
             WHERE name IN (SELECT name FROM pg_settings)"
        );
        client.simple_query(&setup).await.map_err(|err| {
            format!(
                "cannot set up a session on {}: {}",
                self.label,
                describe(&err)
            )
        })?;
        Ok(client)
    }

    /// The process's connection for looking up holders.
    async fn monitor(&'static self) -> Result<Arc<Client>, String> {
        let pid = process::pid();
        {
            let monitor = self.monitor.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((owner, client)) = &*monitor
                && *owner == pid
                && !client.is_closed()
            {
                return Ok(client.clone());
            }
        }
        let name = application_name(pid, "(holders)");
        let client = Arc::new(self.connect(&name, |_| {}).await?);
        let mut monitor = self.monitor.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(inherited) = monitor.replace((pid, client.clone()))
            && inherited.0 != pid
        {
            std::mem::forget(inherited); // the parent's: never close it
        }
        Ok(client)
    }

    /// Refuses a server that cannot keep a session's lock for that session
    /// alone: a read-only standby, or a pooler in transaction or statement
    /// mode. Asked on the first lock session of a process; the verdict is
    /// kept for the process, an error on the way (a refused connection, too
    /// many clients) is not, so the next session asks again.
    async fn check(&'static self, session: &Client) -> Result<(), String> {
        let pid = process::pid();
        {
            let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((owner, verdict)) = &*checked
                && *owner == pid
            {
                return verdict.clone();
            }
        }
        let verdict = self.probe(session).await?;
        *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = Some((pid, verdict.clone()));
        verdict
    }

    /// The verdict: `Ok(Err(why))` refuses the server.
    async fn probe(&'static self, session: &Client) -> Result<Result<(), String>, String> {
        let label = &self.label;
        if query_bool(session, "SELECT pg_is_in_recovery()").await? {
            return Ok(Err(format!(
                "{label} is a read-only standby: its advisory locks are not seen by the primary \
                 or by other standbys; point LOCKATTR_URL at the primary (add \
                 `target_session_attrs=read-write` to pick it among several hosts)"
            )));
        }
        // Take a key of this session's own, then try it from another
        // connection. Behind a pooler in transaction mode the session's
        // server connection goes back to the pool after each statement, and
        // the other connection is handed the very session that holds it.
        // The key is (PROBE, the session's backend pid): no other live
        // session has that pid, whatever host or thread probes at the same
        // time, and two-part keys never meet lockattr's or sqlx's one-part
        // keys.
        let taken = session
            .simple_query(&format!(
                "SELECT pg_backend_pid() WHERE pg_try_advisory_lock({PROBE}, pg_backend_pid())"
            ))
            .await
            .map_err(|err| describe(&err))?;
        let not_kept = |what: &str| {
            format!(
                "{label} does not keep a session's advisory lock to that session: a lock taken \
                 by one statement was {what} by the next, so another client could take it too. \
                 This is a connection pooler in transaction or statement mode (PgBouncer's \
                 pool_mode); connect lockattr to PostgreSQL directly, or through a pool in \
                 session mode"
            )
        };
        let Some(backend) = first_value(&taken) else {
            return Ok(Err(not_kept("not held")));
        };
        let monitor = self.monitor().await?;
        let try_it = format!("SELECT pg_try_advisory_lock({PROBE}, {backend})");
        let unlock = format!("SELECT pg_advisory_unlock({PROBE}, {backend})");
        if query_bool(&monitor, &try_it).await? {
            let _ = monitor.simple_query(&unlock).await;
            return Ok(Err(not_kept("granted to another connection")));
        }
        if !query_bool(session, &unlock).await? {
            return Ok(Err(not_kept("not held")));
        }
        Ok(Ok(()))
    }

    /// Who holds `key`, for a busy message: the first holder, else why
    /// none is named.
    pub(crate) fn holder(&'static self, key: i64) -> Holder {
        match self.holders(key) {
            Ok(holders) => holders.into_iter().next().unwrap_or(Holder::Unlisted),
            Err(_) => Holder::Unknown,
        }
    }

    /// Every session holding `key`: from `pg_locks` and `pg_stat_activity`,
    /// on the monitor connection (a lock session may be busy waiting).
    pub(crate) fn holders(&'static self, key: i64) -> Result<Vec<Holder>, String> {
        let (classid, objid) = key_parts(key);
        let sql = format!(
            "SELECT a.pid::text, coalesce(a.application_name, ''), \
             coalesce(host(a.client_addr), ''), coalesce(a.usename::text, '') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid = {classid} AND l.objid = {objid} \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY a.backend_start"
        );
        let rows = runtime::block_on(async move {
            let monitor = self.monitor().await?;
            monitor
                .simple_query(&sql)
                .await
                .map_err(|err| describe(&err))
        })??;
        Ok(rows
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    let [backend_pid, application, address, user] =
                        [0, 1, 2, 3].map(|i| row.get(i).unwrap_or_default().to_owned());
                    Some(session_holder(&backend_pid, application, address, user))
                }
                _ => None,
            })
            .collect())
    }
}

/// A holder from its `pg_stat_activity` row; a lockattr holder's
/// `application_name` (see [`application_name`]) also gives its host and
/// pid.
fn session_holder(backend_pid: &str, application: String, address: String, user: String) -> Holder {
    let ours = application
        .strip_prefix("lockattr:")
        .and_then(|rest| rest.split_once('@'))
        .and_then(|(pid, rest)| {
            let host = rest.split_once(':').map_or(rest, |(host, _)| host);
            Some((pid.parse().ok()?, host.to_owned()))
        });
    let (pid, host) = ours.map_or((None, None), |(pid, host)| (Some(pid), Some(host)));
    let some = |text: String| Some(text).filter(|text| !text.is_empty());
    Holder::Session {
        pid,
        host,
        backend_pid: backend_pid.parse().unwrap_or_default(),
        address: some(address),
        user: some(user),
        application: some(application),
    }
}

/// `lockattr:PID@HOST:LOCK`, cut to the 63 bytes PostgreSQL keeps: the pid
/// always survives, then the host, then as much of the lock's name as fits.
pub(crate) fn application_name(pid: u32, lock: &str) -> String {
    let host = rustix::system::uname();
    let host = host.nodename().to_string_lossy();
    let mut name = format!("lockattr:{pid}@{host}:{lock}");
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// `host:port/database` of the first host, for messages.
fn label(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// A database error as one line: its SQLSTATE and message; any other
/// error with its causes, which tokio-postgres's `Display` leaves out
/// ("error performing TLS handshake" alone would not say which check
/// failed, nor "error connecting to server" why).
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

async fn query_bool(client: &Client, sql: &str) -> Result<bool, String> {
    let rows = client
        .simple_query(sql)
        .await
        .map_err(|err| describe(&err))?;
    Ok(first_value(&rows).as_deref() == Some("t"))
}

pub(crate) fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    rows.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector in sqlx's documentation of `PgAdvisoryLock::new`.
    #[test]
    fn the_key_is_sqlx_s() {
        assert_eq!(
            advisory_key("my first Postgres advisory lock!"),
            -5560419505042474287
        );
    }

    #[test]
    fn application_names_keep_the_pid_and_fit() {
        let name = application_name(4242, &"x".repeat(200));
        assert!(name.starts_with("lockattr:4242@"), "{name}");
        assert!(name.len() <= 63);
        let holder = session_holder("77", name, String::new(), "ci".to_owned());
        assert_eq!(holder.pid(), Some(4242));
    }

    #[test]
    fn urls_are_read_with_libpq_s_ssl_modes() {
        assert!(Server::from_url("postgres://u@db/locks?sslmode=verify-full").is_err());
        let err = Server::from_url("postgres://u:secret@db/locks?sslmode=bogus")
            .err()
            .unwrap();
        assert!(!err.contains("secret"), "{err}");
        let server = Server::from_url("postgres://u:secret@db:6543/locks?sslmode=require").unwrap();
        assert_eq!(server.label(), "db:6543/locks");
    }
}
