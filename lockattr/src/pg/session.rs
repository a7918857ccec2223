//! One lock's database session: the connection whose session holds the
//! advisory lock, kept between holds so that a repeated call is one round
//! trip.

use super::{HEARTBEAT, Server, application_name, describe, first_value, key_parts, runtime};
use crate::error::{About, Error, ErrorKind};
use crate::file::{LockMode, Try};
use crate::messages;
use crate::process;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

pub(crate) struct Session {
    client: Arc<Client>,
    flags: Arc<Flags>,
    key: i64,
    server: &'static Server,
    /// The try-lock and unlock statements, prepared once per session: a
    /// prepared statement skips the server's parse and plan, which costs
    /// as much as the round trip itself for statements this small.
    statements: Arc<std::sync::OnceLock<Statements>>,
    /// The fencing token of the current hold once asked for (0: not yet;
    /// no transaction id is 0): one hold has one token.
    token: AtomicU64,
}

/// `[exclusive, shared]` each.
struct Statements {
    try_lock: [Statement; 2],
    unlock: [Statement; 2],
}

fn index(mode: LockMode) -> usize {
    match mode {
        LockMode::Exclusive => 0,
        LockMode::Shared => 1,
    }
}

/// What the session's connection task and heartbeat share with it.
struct Flags {
    /// The connection is open; once false, the server has let go of every
    /// lock the session held.
    alive: AtomicBool,
    /// The session holds the lock now (the heartbeat pings only then).
    held: AtomicBool,
    /// The loss was reported, so it is reported once.
    reported: AtomicBool,
    /// The session may hold the lock while we think it does not: a cancel
    /// was sent (it may arrive late, after the wait was granted, and cancel
    /// whatever runs then, such as an unlock), or an unlock failed. Such a
    /// session is closed rather than unlocked or used again: closing is
    /// the one way to be sure the server lets go.
    doubtful: AtomicBool,
    name: Option<Box<str>>,
    key: i64,
    label: Box<str>,
}

impl Flags {
    /// Says loudly, once, that the lock was lost while held.
    fn report_loss(&self) {
        if !self.reported.swap(true, Ordering::SeqCst) {
            let at = crate::error::LocationRef::Advisory {
                server: &self.label,
                key: self.key,
            };
            messages::lost(self.name.as_deref(), at, crate::backend::Lost::Session);
        }
    }
}

/// Cancels a wait in progress on the server (a new connection that sends
/// PostgreSQL's cancel request for the session).
pub(crate) struct Cancel {
    token: tokio_postgres::CancelToken,
    tls: super::Tls,
    flags: Arc<Flags>,
}

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.flags.doubtful.store(true, Ordering::SeqCst);
        let (token, tls) = (self.token.clone(), self.tls.clone());
        runtime::spawn(async move {
            let _ = token.cancel_query(tls).await;
        });
    }
}

impl Session {
    /// Connects, sets the session up and (once per process) checks that
    /// the server keeps a session's lock to that session.
    pub(crate) fn open(
        server: &'static Server,
        key: i64,
        name: Option<&str>,
        about: About<'_>,
    ) -> Result<Session, Error> {
        let flags = Arc::new(Flags {
            alive: AtomicBool::new(true),
            held: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            doubtful: AtomicBool::new(false),
            name: name.map(Box::from),
            key,
            label: server.label().into(),
        });
        let app = application_name(process::pid(), name.unwrap_or("(path)"));
        let on_end = {
            let flags = Arc::downgrade(&flags);
            move |_: Result<(), String>| {
                if let Some(flags) = flags.upgrade() {
                    flags.alive.store(false, Ordering::SeqCst);
                    if flags.held.load(Ordering::SeqCst) {
                        flags.report_loss();
                    }
                }
            }
        };
        let opened = runtime::block_on(async move {
            let client = server.connect(&app, on_end).await?;
            server.check(&client).await?;
            Ok::<_, String>(client)
        });
        let client = match opened {
            Ok(Ok(client)) => Arc::new(client),
            Ok(Err(text)) | Err(text) => return Err(Error::other(ErrorKind::Io, about, text)),
        };
        runtime::spawn(heartbeat(Arc::downgrade(&client), Arc::downgrade(&flags)));
        Ok(Session {
            client,
            flags,
            key,
            server,
            statements: Arc::new(std::sync::OnceLock::new()),
            token: AtomicU64::new(0),
        })
    }

    /// The statements, prepared on first use (four round trips, once per
    /// session).
    async fn statements(
        client: &Client,
        kept: &std::sync::OnceLock<Statements>,
    ) -> Result<(), tokio_postgres::Error> {
        if kept.get().is_some() {
            return Ok(());
        }
        let int8 = [Type::INT8];
        let prepare = |sql| client.prepare_typed(sql, &int8);
        let _ = kept.set(Statements {
            try_lock: [
                prepare("SELECT pg_try_advisory_lock($1)").await?,
                prepare("SELECT pg_try_advisory_lock_shared($1)").await?,
            ],
            unlock: [
                prepare("SELECT pg_advisory_unlock($1)").await?,
                prepare("SELECT pg_advisory_unlock_shared($1)").await?,
            ],
        });
        Ok(())
    }

    /// One round trip: `pg_try_advisory_lock[_shared]`.
    pub(crate) fn try_lock(&mut self, mode: LockMode, about: About<'_>) -> Result<Try, Error> {
        let (client, kept, key) = (self.client.clone(), self.statements.clone(), self.key);
        let tried = runtime::block_on(async move {
            Session::statements(&client, &kept).await?;
            let statement = &kept.get().expect("prepared above").try_lock[index(mode)];
            let row = client.query_one(statement, &[&key]).await?;
            row.try_get::<_, bool>(0)
        });
        let locked = match tried {
            Ok(Ok(locked)) => locked,
            Ok(Err(err)) => return Err(self.failure(about, "lock", &describe(&err))),
            Err(text) => return Err(self.failure(about, "lock", &text)),
        };
        self.flags.held.store(locked, Ordering::SeqCst);
        self.token.store(0, Ordering::SeqCst);
        Ok(if locked { Try::Locked } else { Try::Busy })
    }

    /// Waits in the server's queue, until `deadline` (`lock_timeout`: busy,
    /// SQLSTATE 55P03) or a cancel (57014: busy too).
    pub(crate) fn lock_blocking(
        &mut self,
        mode: LockMode,
        deadline: Option<Instant>,
        about: About<'_>,
    ) -> Result<Try, Error> {
        let function = match mode {
            LockMode::Exclusive => "pg_advisory_lock",
            LockMode::Shared => "pg_advisory_lock_shared",
        };
        // 0 waits without limit; a deadline due already still waits 1 ms.
        // The server takes at most i32::MAX ms (24.8 days): a longer
        // deadline waits that long, then busy.
        let timeout_ms = deadline.map_or(0, |deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            left.as_millis().clamp(1, i32::MAX as u128)
        });
        let sql = format!(
            "SET lock_timeout = {timeout_ms}; SELECT {function}({}); SET lock_timeout = 0",
            self.key
        );
        let client = self.client.clone();
        let waited = runtime::block_on(async move { client.simple_query(&sql).await });
        match waited {
            Ok(Ok(_)) => {
                self.flags.held.store(true, Ordering::SeqCst);
                self.token.store(0, Ordering::SeqCst);
                Ok(Try::Locked)
            }
            Ok(Err(err))
                if matches!(
                    err.code(),
                    Some(&SqlState::LOCK_NOT_AVAILABLE | &SqlState::QUERY_CANCELED)
                ) =>
            {
                Ok(Try::Busy)
            }
            Ok(Err(err)) => Err(self.failure(about, "wait for", &describe(&err))),
            Err(text) => Err(self.failure(about, "wait for", &text)),
        }
    }

    /// Lets go without waiting for the answer: the request goes out before
    /// any later one on this connection, so a repeated call stays one round
    /// trip. If the server says we did not hold it, the lock had been lost.
    pub(crate) fn unlock(&mut self, mode: LockMode) {
        self.flags.held.store(false, Ordering::SeqCst);
        self.token.store(0, Ordering::SeqCst);
        let (client, flags, kept, key) = (
            self.client.clone(),
            self.flags.clone(),
            self.statements.clone(),
            self.key,
        );
        runtime::spawn(async move {
            // Prepared by the try-lock that took it, unless a blocking wait
            // did; then the plain statement.
            let unlocked = match kept.get() {
                Some(statements) => client
                    .query_one(&statements.unlock[index(mode)], &[&key])
                    .await
                    .and_then(|row| row.try_get::<_, bool>(0))
                    .ok(),
                None => {
                    let function = match mode {
                        LockMode::Exclusive => "pg_advisory_unlock",
                        LockMode::Shared => "pg_advisory_unlock_shared",
                    };
                    let sql = format!("SELECT {function}({key})");
                    client
                        .simple_query(&sql)
                        .await
                        .ok()
                        .map(|rows| first_value(&rows).as_deref() == Some("t"))
                }
            };
            match unlocked {
                Some(true) => {}
                Some(false) => flags.report_loss(), // we did not hold it: it had been lost
                None => flags.doubtful.store(true, Ordering::SeqCst),
            }
        });
    }

    pub(crate) fn cancel(&self) -> Cancel {
        Cancel {
            token: self.client.cancel_token(),
            tls: self.server.tls.clone(),
            flags: self.flags.clone(),
        }
    }

    /// Whether the session ended (and the server let go of its locks).
    pub(crate) fn lost(&self) -> bool {
        !self.flags.alive.load(Ordering::SeqCst)
    }

    /// Whether the session may be unlocked and used again: it is open, and
    /// not doubtful (see [`Flags::doubtful`]); otherwise it is closed.
    pub(crate) fn reusable(&self) -> bool {
        !self.lost() && !self.flags.doubtful.load(Ordering::SeqCst)
    }

    /// Says loudly that the lock was lost while held, unless the connection
    /// task said so already.
    pub(crate) fn report_loss(&self) {
        self.flags.report_loss();
    }

    /// Asks the server whether this session holds the lock.
    pub(crate) fn still_held(&self, about: About<'_>) -> Result<bool, Error> {
        let (classid, objid) = key_parts(self.key);
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid() AND objsubid = 1 AND classid = {classid} \
             AND objid = {objid})"
        );
        match self.query(sql, about, "check") {
            Ok(held) => Ok(held == "t"),
            Err(_) if !self.flags.alive.load(Ordering::SeqCst) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// A number that grows with every acquisition of the lock, across
    /// holders and server restarts: a transaction id of the holding
    /// session, taken while it holds the lock. Every earlier holder took
    /// its own before letting go, and every later one after taking it.
    /// Taken once per hold: each `pg_current_xact_id()` in autocommit is a
    /// new transaction, so asking again would give a larger number for the
    /// same hold.
    pub(crate) fn fencing_token(&self, about: About<'_>) -> Result<u64, Error> {
        let cached = self.token.load(Ordering::SeqCst);
        if cached != 0 {
            return Ok(cached);
        }
        let text = self.query("SELECT pg_current_xact_id()".to_owned(), about, "fence")?;
        let token = text.parse().map_err(|_| {
            let text = format!("the server gave `{text}` as a transaction id");
            Error::other(ErrorKind::Io, about, text)
        })?;
        self.token.store(token, Ordering::SeqCst);
        Ok(token)
    }

    /// One simple query, its first value.
    fn query(&self, sql: String, about: About<'_>, action: &str) -> Result<String, Error> {
        let client = self.client.clone();
        let result = runtime::block_on(async move { client.simple_query(&sql).await });
        match result {
            Ok(Ok(rows)) => Ok(first_value(&rows).unwrap_or_default()),
            Ok(Err(err)) => Err(self.failure(about, action, &describe(&err))),
            Err(text) => Err(self.failure(about, action, &text)),
        }
    }

    fn failure(&self, about: About<'_>, action: &str, why: &str) -> Error {
        let text = format!("cannot {action} it on the server: {why}");
        Error::other(ErrorKind::Io, about, text)
    }
}

/// Closing the session is letting go on purpose (of a doubtful session's
/// lock too): its connection's end is then no loss to report.
impl Drop for Session {
    fn drop(&mut self) {
        self.flags.held.store(false, Ordering::SeqCst);
    }
}

/// While the session holds the lock, a ping every [`HEARTBEAT`]: on a dead
/// network the ping goes unanswered and the kernel gives up on it after
/// the client's `tcp_user_timeout`, which ends the connection, which the
/// connection task reports. Ends with the session.
async fn heartbeat(client: Weak<Client>, flags: Weak<Flags>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let (Some(client), Some(flags)) = (client.upgrade(), flags.upgrade()) else {
            return;
        };
        if !flags.alive.load(Ordering::SeqCst) {
            return;
        }
        if flags.held.load(Ordering::SeqCst) {
            let _ = client.simple_query("").await;
        }
    }
}
