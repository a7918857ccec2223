//! Names for messages: this program's, and other users'.

use std::sync::OnceLock;

/// The program's name, as the busy line and the waiting notice begin with
/// it (as `grep:` or `cargo:` lines do): the file name of `argv[0]`.
pub(crate) fn program() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::args_os()
            .next()
            .as_deref()
            .map(std::path::Path::new)
            .and_then(std::path::Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "lockattr".to_owned())
    })
}

/// The name of user `uid`, from `/etc/passwd`. Users known only to NSS
/// (LDAP, systemd-homed) have none here; messages then give the uid alone.
#[cfg_attr(
    not(all(target_os = "linux", not(lockattr_portable))),
    allow(dead_code)
)]
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(uid)).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_named() {
        assert_eq!(super::user_name(0).as_deref(), Some("root"));
    }
}
