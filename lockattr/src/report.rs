//! The lines lockattr itself writes to stderr: the busy line of a `()`
//! function, the notice of a long wait, and the warning that a held lock
//! file was deleted or replaced. Each begins with the program's name.

use crate::backend::Lost;
use crate::error::Error;
use crate::error::LocationRef;
use crate::who::program;

/// A `()` function found its lock busy and did not run.
pub(crate) fn busy(err: &Error) {
    eprintln!("{}: not running: {err}", program());
}

/// A wait goes on after about a second, as Cargo's "Blocking waiting for
/// file lock" does.
pub(crate) fn waiting(what: &str, holder: &dyn std::fmt::Display, until: &str) {
    eprintln!(
        "{}: waiting for {what}, held by {holder}; {until}",
        program()
    );
}

/// The lock was lost while this process held it: its file was deleted or
/// replaced (from then on another process could lock a new file at that
/// path and run beside us; flock cannot prevent that), or its database
/// session ended. The holder can only say so, loudly.
pub(crate) fn lost(name: Option<&str>, at: LocationRef<'_>, lost: Lost) {
    let lock = match name {
        Some(name) => format!("lock \"{name}\""),
        None => "the lock".to_owned(),
    };
    let what = match (lost, at) {
        (Lost::Deleted, LocationRef::File(path)) => format!(
            "the file of {lock}, {}, was deleted (`rm`, a /tmp cleaner) while this process held \
             it, so another process may have locked a new file there and run at the same time; \
             lock files must never be removed",
            path.display()
        ),
        (_, LocationRef::File(path)) => format!(
            "the file of {lock}, {}, was replaced by another file (`mv` or `cp` over it, or \
             deleted and made again) while this process held it, so another process may have \
             locked the new file and run at the same time; lock files must never be removed",
            path.display()
        ),
        (_, LocationRef::Advisory { server, key }) => format!(
            "{lock} (PostgreSQL advisory key {key} on {server}) was lost while this process held \
             it: its database session ended (the server was restarted, the backend terminated, \
             or the network dropped), so the server may have let another holder run at the same \
             time"
        ),
    };
    eprintln!(
        "{}: WARNING: exclusion may have been broken: {what}",
        program()
    );
}
