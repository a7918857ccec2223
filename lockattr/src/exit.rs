//! Exit statuses a shell script can tell apart: busy is not failure.

use crate::error::Error;
use crate::who::program;
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};

/// The exit status for "busy, try again later": `EX_TEMPFAIL` from
/// `sysexits.h`, what `flock -E 75` users choose.
pub const EXIT_BUSY: u8 = 75;

/// The exit status of `main` for the result of an `#[exclusive]` function:
/// 0 for `Ok`, [`EXIT_BUSY`] (75) when the lock was busy, 1 for any other
/// error. An error is printed first, as `PROGRAM: message: cause...`.
///
/// ```
/// use std::process::ExitCode;
///
/// #[lockattr::exclusive("doc-exit-deploy")]
/// fn deploy() -> Result<(), Box<dyn std::error::Error>> {
///     Ok(())
/// }
///
/// fn main() -> ExitCode {
/// #   let _dir = lockattr::__private::doc_dir();
///     lockattr::exit_code(deploy()) // `tool deploy && next` stops on busy, with 75
/// }
/// ```
///
/// Busy is found anywhere in the error's chain: a [`lockattr::Error`](Error)
/// itself, or inside `anyhow::Error` (with or without context),
/// `Box<dyn Error>` or `std::io::Error`.
pub fn exit_code<E>(result: Result<(), E>) -> ExitCode
where
    E: Into<Box<dyn std::error::Error>>,
{
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    let err: Box<dyn std::error::Error> = err.into();
    let mut message = format!("{}: {err}", program());
    let mut cause = err.source();
    while let Some(source) = cause {
        message.push_str(&format!(": {source}"));
        cause = source.source();
    }
    eprintln!("{message}");
    if is_busy(&*err) {
        ExitCode::from(EXIT_BUSY)
    } else {
        ExitCode::FAILURE
    }
}

/// Whether a lockattr busy error is anywhere in the chain.
fn is_busy(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(ours) = err.downcast_ref::<Error>() {
            return ours.is_busy();
        }
        // `io::Error::new(kind, our_error)` hides ours from `source()`.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if let Some(ours) = inner.and_then(|inner| inner.downcast_ref::<Error>()) {
            return ours.is_busy();
        }
        next = err.source();
    }
    // `anyhow::Error` boxes our error in a type of its own that cannot be
    // downcast; its message is ours, word for word.
    let message = err.to_string();
    RECENT_BUSY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|busy| *busy == message)
}

/// The messages of the busy errors made last in this process, so that
/// [`exit_code`] can recognise one inside error types it cannot look into.
/// Several: other threads, or busy errors the program handled itself, may
/// have made newer ones than the one `main` returns.
static RECENT_BUSY: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
const RECENT: usize = 32;

pub(crate) fn note_busy(err: &Error) {
    let message = err.to_string();
    let mut recent = RECENT_BUSY.lock().unwrap_or_else(PoisonError::into_inner);
    if !recent.contains(&message) {
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(message);
    }
}
