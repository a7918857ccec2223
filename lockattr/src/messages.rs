//! What lockattr says on its own, without being asked: the busy line of a
//! `()` function, the notice of a wait that lasts, and the warning that a
//! held lock was lost. By default each is one line on stderr beginning with
//! the program's name; a program can silence them, take them itself (JSON
//! logs, a TUI), or, with the `tracing` feature, receive them as events.

use crate::backend::Lost;
use crate::error::{Error, Holder, LocationRef};
use crate::who::program;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A line lockattr would write on its own. Its `Display` is the line,
/// without the program's name in front.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message<'a> {
    /// A function returning `()` found its lock busy and did not run.
    NotRunning {
        /// The busy error: the lock, its file, the holder.
        error: &'a Error,
    },
    /// A wait has lasted about a second (printed once per lock per
    /// process, however many threads or tasks wait).
    Waiting {
        /// The lock's name; `None` for a lock given by its path.
        name: Option<&'a str>,
        /// Where it is: its file, or its key on a PostgreSQL server.
        place: &'a str,
        /// Who holds it now.
        holder: &'a Holder,
        /// The wait's limit, if any (`wait = "DUR"`).
        limit: Option<Duration>,
    },
    /// A lock was lost while held: its file deleted or replaced, or its
    /// database session ended. Exclusion may have been broken.
    Lost {
        /// The lock and what happened to it, as a sentence.
        what: &'a str,
    },
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::NotRunning { error } => write!(f, "not running: {error}"),
            Message::Waiting {
                name,
                place,
                holder,
                limit,
            } => {
                match name {
                    Some(name) => write!(f, "waiting for lock \"{name}\" ({place})")?,
                    None => write!(f, "waiting for lock {place}")?,
                }
                write!(f, ", held by {holder}; ")?;
                match limit {
                    Some(limit) => write!(f, "will wait up to {}", Human(*limit)),
                    None => f.write_str("waiting until it is free"),
                }
            }
            Message::Lost { what } => {
                write!(f, "WARNING: exclusion may have been broken: {what}")
            }
        }
    }
}

/// Where lockattr's own lines go; see [`set_messages`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Messages {
    /// Standard error, one line each, beginning with the program's name
    /// (the default without the `tracing` feature).
    Stderr,
    /// Nowhere. A `()` function that found its lock busy then returns
    /// without a word: make sure the program tells its user some other way.
    Silent,
    /// A function of the program's, called on the thread (or task) the
    /// message is about.
    To(fn(&Message<'_>)),
    /// `tracing` events, target `lockattr`, with the lock, its file, the
    /// holder and the wait as fields (feature `tracing`). The default with
    /// the feature: events when a subscriber listens, else stderr.
    #[cfg(feature = "tracing")]
    Tracing,
}

static WHERE: Mutex<Option<Messages>> = Mutex::new(None);

/// Sends lockattr's own lines (see [`Message`]) elsewhere than stderr, or
/// nowhere. Takes effect for every later message of the process.
///
/// ```
/// use lockattr::{Message, Messages};
///
/// fn as_json(message: &Message<'_>) {
///     eprintln!("{{\"lockattr\": {:?}}}", message.to_string());
/// }
/// lockattr::set_messages(Messages::To(as_json));
/// # lockattr::set_messages(Messages::Stderr);
/// ```
pub fn set_messages(to: Messages) {
    *WHERE.lock().unwrap_or_else(PoisonError::into_inner) = Some(to);
}

fn say(message: &Message<'_>) {
    let chosen = *WHERE.lock().unwrap_or_else(PoisonError::into_inner);
    match chosen {
        Some(Messages::Stderr) => stderr(message),
        Some(Messages::Silent) => {}
        Some(Messages::To(to)) => to(message),
        #[cfg(feature = "tracing")]
        Some(Messages::Tracing) => events::emit(message),
        #[cfg(feature = "tracing")]
        None if events::listened() => events::emit(message),
        None => stderr(message),
    }
}

fn stderr(message: &Message<'_>) {
    eprintln!("{}: {message}", program());
}

/// A `()` function found its lock busy and did not run.
pub(crate) fn busy(error: &Error) {
    say(&Message::NotRunning { error });
}

/// A wait goes on after about a second, as Cargo's "Blocking waiting for
/// file lock" does.
pub(crate) fn waiting(name: Option<&str>, place: &str, holder: &Holder, limit: Option<Duration>) {
    say(&Message::Waiting {
        name,
        place,
        holder,
        limit,
    });
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
            "the file of {lock}, {}, was deleted or moved away (`rm`, a /tmp cleaner, `mv`) \
             while this process held it, so another process may have locked a new file there and \
             run at the same time; lock files must never be removed",
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
    say(&Message::Lost { what: &what });
}

/// A duration as the attribute spells it: `250ms`, `30s`, `5m`, `1h`.
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) => {
                write!(f, "{}h", ms / 3_600_000)
            }
            _ if ms >= 60_000 && ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms >= 1_000 && ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// The `tracing` events.
#[cfg(feature = "tracing")]
mod events {
    use super::Message;

    /// Whether a subscriber listens on this thread (a global one, or one
    /// set for a scope, as tests do).
    pub(super) fn listened() -> bool {
        tracing::dispatcher::get_default(|dispatch| {
            !dispatch.is::<tracing::subscriber::NoSubscriber>()
        })
    }

    pub(super) fn emit(message: &Message<'_>) {
        match message {
            Message::NotRunning { error } => tracing::warn!(
                target: "lockattr",
                lock = error.lock_name(),
                file = error.path().map(|path| path.display().to_string()),
                advisory_key = error.advisory_key(),
                holder = error.holder().map(ToString::to_string),
                holder_pid = error.holder().and_then(crate::Holder::pid),
                "not running: {error}"
            ),
            Message::Waiting {
                name,
                place,
                holder,
                limit,
            } => tracing::info!(
                target: "lockattr",
                lock = *name,
                place = *place,
                holder = %holder,
                holder_pid = holder.pid(),
                wait_limit_ms = limit.map(|limit| limit.as_millis() as u64),
                "{message}"
            ),
            Message::Lost { what } => tracing::error!(target: "lockattr", "{what}"),
        }
    }
}
