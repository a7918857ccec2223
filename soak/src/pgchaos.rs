//! PostgreSQL mode (`--postgres`): the server the workers lock on, and the
//! chaos done to it. A backend of a holder terminated
//! (`pg_terminate_backend`), or the whole server restarted, ends the
//! holder's session and with it the lock, while the holder's body runs on:
//! lockattr documents that it cannot prevent that (it tells the holder
//! loudly, within its heartbeat), so an overlap that such an event explains
//! is no failure.

use crate::journal::{Journal, Kind, Record, now};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A throw-away server of our own (`tests/pg/cluster`), which the chaos
/// loop may restart.
pub struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    pub fn start(run: &Path) -> Result<(Cluster, String), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pg/cluster");
        if !script.exists() {
            return Err(format!("no {}", script.display()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|err| format!("no free port: {err}"))?
            .port();
        let cluster = Cluster {
            script,
            dir: run.join("pg"),
            port,
        };
        cluster.run(&[
            "start",
            &cluster.dir.display().to_string(),
            &port.to_string(),
        ])?;
        let url = cluster.run(&["url", &cluster.dir.display().to_string()])?;
        Ok((cluster, url.trim().to_owned()))
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.script)
            .args(args)
            .output()
            .map_err(|err| format!("{}: {err}", self.script.display()))?;
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(format!(
                "{} {}: {}",
                self.script.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// Stops the server (fast: every session ends) and starts it again.
    pub fn restart(&self, journal: &Journal) -> Result<(), String> {
        let before = now();
        let dir = self.dir.display().to_string();
        self.run(&["stop", &dir])?;
        let started = self.run(&["start", &dir, &self.port.to_string()]);
        let mut record = Record::new(Kind::Restart);
        record.b = before;
        journal.append(&record);
        started.map(drop)
    }

    pub fn stop(&self) {
        let _ = self.run(&["stop", &self.dir.display().to_string()]);
    }
}

/// Terminates one lockattr session at random; returns the pid of the
/// process it belonged to (from its `application_name`,
/// `lockattr:PID@HOST:LOCK`) and the lock it was for. The event is
/// journalled by the caller, who knows the process's slot.
pub fn terminate_one(url: &str) -> Result<Option<(u32, String, u64, u64)>, String> {
    let sql = "SELECT s.application_name, pg_terminate_backend(s.pid) FROM \
               (SELECT pid, application_name FROM pg_stat_activity \
                WHERE application_name LIKE 'lockattr:%' AND pid <> pg_backend_pid() \
                ORDER BY random() LIMIT 1) s";
    let before = now();
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-d", url, "-c", sql])
        .output()
        .map_err(|err| format!("psql: {err}"))?;
    let after = now();
    if !out.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(name) = text.lines().next().and_then(|line| line.split('|').next()) else {
        return Ok(None);
    };
    let rest = name.strip_prefix("lockattr:").unwrap_or_default();
    let pid = rest.split('@').next().and_then(|pid| pid.parse().ok());
    let lock = rest.rsplit(':').next().unwrap_or_default().to_owned();
    Ok(pid.map(|pid| (pid, lock, before, after)))
}
