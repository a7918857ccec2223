//! The lines lockattr itself writes to stderr: the busy line of a `()`
//! function, the notice of a long wait, and the warning that a held lock
//! file was deleted or replaced. Each begins with the program's name.

use crate::error::Error;
use crate::file::Named;
use crate::who::program;
use std::path::Path;

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

/// The lock file was deleted or replaced while this process held it: from
/// then on another process could lock a new file at that path and run
/// beside us. flock cannot prevent that; the holder can only say so.
pub(crate) fn lost_file(name: Option<&str>, path: &Path, lost: Named) {
    let lock = match name {
        Some(name) => format!("lock \"{name}\""),
        None => "the lock".to_owned(),
    };
    let what = match lost {
        Named::Deleted => "was deleted (`rm`, a /tmp cleaner)",
        _ => "was replaced by another file (`mv` or `cp` over it, or deleted and made again)",
    };
    eprintln!(
        "{}: WARNING: exclusion may have been broken: the file of {lock}, {}, {what} while \
         this process held it, so another process may have locked a new file there and run at \
         the same time; lock files must never be removed",
        program(),
        path.display()
    );
}
