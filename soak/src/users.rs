//! The second user that some participants run as, made as `tests/users.rs`
//! makes it: `useradd` without a home, taking turns with other runs on the
//! host under an flock on /etc/passwd itself.

use lockattr::Lock;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const OTHER_USER: &str = "lockattr-t1";

#[derive(Clone, Debug)]
pub struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

/// `lockattr-t1`, created when missing; `Err` says why there is none.
pub fn ensure(name: &'static str) -> Result<User, String> {
    if let Some(user) = lookup(name) {
        return Ok(user);
    }
    const PASSWD: Lock = Lock::at_path("/etc/passwd").wait_for(Duration::from_secs(60));
    let _turn = PASSWD
        .acquire()
        .map_err(|err| format!("no turn at adding users: {err}"))?;
    if let Some(user) = lookup(name) {
        return Ok(user);
    }
    let out = Command::new(sbin("useradd"))
        .args([
            "-M",
            "-s",
            "/usr/sbin/nologin",
            "-c",
            "lockattr tests",
            name,
        ])
        .output()
        .map_err(|err| format!("useradd: {err}"))?;
    // Exit status 9: made meanwhile by someone not taking turns.
    if !out.status.success() && out.status.code() != Some(9) {
        return Err(format!(
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    lookup(name).ok_or_else(|| format!("no user {name} after useradd"))
}

fn lookup(name: &'static str) -> Option<User> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some(User {
        name,
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// `useradd` and `runuser` live in sbin, which a non-login PATH may lack.
pub fn sbin(command: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(command))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(command))
}
