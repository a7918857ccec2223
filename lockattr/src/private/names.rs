//! Names made at each call: a template's values, several names.

use crate::holder::HolderId;
use crate::registry::Slot;
use crate::template::NameBuf;
use crate::wait::{AcquireAsync, Wait};
use crate::{Error, Hold, Lock};

use super::TestName;

/// One part of a lock name written in the attribute: fixed text (checked
/// at compile time), or a parameter's value, escaped at run time.
pub enum Part<'a> {
    Fixed(&'static str),
    /// A value's own bytes (`&str`, `String`, `Path`, `OsStr`...).
    Bytes(&'a [u8]),
    /// A value as `Display` writes it (numbers, enums...).
    Display(&'a dyn std::fmt::Display),
}

/// A lock name written in the attribute: the template as written (for
/// messages) and its parts.
pub struct Name<'a> {
    template: &'static str,
    parts: &'a [Part<'a>],
}

impl<'a> Name<'a> {
    pub const fn new(template: &'static str, parts: &'a [Part<'a>]) -> Name<'a> {
        Name { template, parts }
    }

    fn slot(&self, options: &Lock) -> Result<&'static Slot, Error> {
        let mut buf = NameBuf::new();
        for part in self.parts {
            match part {
                Part::Fixed(text) => buf.push_fixed(text),
                Part::Bytes(bytes) => buf.push_value(bytes),
                Part::Display(value) => buf.push_display(*value),
            }
        }
        options.slot_for(buf.finish(self.template)?)
    }
}

/// A parameter's value, turned into a [`Part`] by whichever of
/// [`ByBytes`] and [`ByDisplay`] applies first (autoref specialization: the
/// expansion calls `(&Value(&param)).part()`).
pub struct Value<'a, T: ?Sized>(pub &'a T);

pub trait ByBytes<'a> {
    fn part(&self) -> Part<'a>;
}

impl<'a, T: AsRef<std::ffi::OsStr> + ?Sized> ByBytes<'a> for Value<'a, T> {
    fn part(&self) -> Part<'a> {
        Part::Bytes(self.0.as_ref().as_encoded_bytes())
    }
}

/// Applies to every value, so that a value with neither `AsRef<OsStr>` nor
/// `Display` gets `Placeholder`'s own error, at its parameter, rather
/// than rustc's account of why no `part` method fits.
pub trait ByDisplay<'a, T: ?Sized> {
    fn part(&self) -> Part<'a>
    where
        T: Placeholder;
}

impl<'a, T: ?Sized> ByDisplay<'a, T> for &Value<'a, T> {
    fn part(&self) -> Part<'a>
    where
        T: Placeholder,
    {
        Part::Display(self.0.as_display())
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a lock name: it implements neither `Display` nor `AsRef<OsStr>`",
    label = "this parameter is a placeholder of the lock name",
    note = "implement `Display` for it, or name a parameter that has it"
)]
pub trait Placeholder {
    fn as_display(&self) -> &dyn std::fmt::Display;
}

impl<T: std::fmt::Display> Placeholder for T {
    fn as_display(&self) -> &dyn std::fmt::Display {
        self
    }
}

/// The locks of an attribute's names, each once, in the one global order.
/// No allocation for a single name.
pub struct Slots {
    first: &'static Slot,
    more: Vec<&'static Slot>,
}

/// The slots of `names` with `options`' directory.
pub fn resolve(options: &'static Lock, names: &[Name<'_>]) -> Result<Slots, Error> {
    let (first, rest) = names.split_first().expect("the attribute gives a name");
    let first = first.slot(options)?;
    if rest.is_empty() {
        return Ok(Slots {
            first,
            more: Vec::new(),
        });
    }
    let mut all = vec![first];
    for name in rest {
        all.push(name.slot(options)?);
    }
    all.sort_by(|a, b| a.order(b));
    all.dedup_by(|a, b| std::ptr::eq(*a, *b));
    let first = all.remove(0);
    Ok(Slots { first, more: all })
}

/// The locks of a sync function whose names are made at each call: all
/// taken, in order, as the current thread (or task), as `options` say; a
/// test waits as [`enter`](super::enter) explains.
pub fn enter_names(
    options: &'static Lock,
    names: &[Name<'_>],
    test: Option<&'static TestName>,
) -> Result<Hold, Error> {
    let slots = resolve(options, names)?;
    let holder = HolderId::current();
    match take_all(options, &slots, holder) {
        Err(err) if err.is_busy() && test.is_some_and(TestName::is_running) => {
            take_all(&options.wait(), &slots, holder)
        }
        taken => taken,
    }
}

fn take_all(options: &Lock, slots: &Slots, holder: HolderId) -> Result<Hold, Error> {
    let deadline = deadline(options);
    let mut hold = options.take(slots.first, holder)?;
    for &slot in &slots.more {
        // Dropping `hold` on an error lets go of the locks taken so far.
        let left = remaining(options, deadline);
        crate::wait::acquire_blocking(slot, options.mode, left, holder)?;
        hold.more.push(slot);
    }
    Ok(hold)
}

/// The locks of an async function whose names are made at each call. The
/// names were resolved in a statement of their own, so that the borrowed
/// values do not live across an `.await` (the future stays `Send`).
pub async fn enter_slots_async(
    slots: Result<Slots, Error>,
    options: &'static Lock,
) -> Result<Hold, Error> {
    let slots = slots?;
    let holder = HolderId::for_task();
    let deadline = deadline(options);
    let mut hold: Option<Hold> = None;
    for slot in std::iter::once(slots.first).chain(slots.more) {
        match remaining(options, deadline) {
            Wait::No => slot.try_now(options.mode, holder)?,
            Wait::Forever => AcquireAsync::new(slot, options.mode, None, holder).await?,
            Wait::For(left) => AcquireAsync::new(slot, options.mode, Some(left), holder).await?,
        }
        match &mut hold {
            Some(hold) => hold.more.push(slot),
            None => hold = Some(Hold::one(slot, holder)),
        }
    }
    Ok(hold.expect("at least one lock"))
}

fn deadline(options: &Lock) -> Option<std::time::Instant> {
    match options.wait {
        Wait::For(limit) => std::time::Instant::now().checked_add(limit),
        _ => None,
    }
}

/// What is left of a bounded wait for the next lock of several.
fn remaining(options: &Lock, deadline: Option<std::time::Instant>) -> Wait {
    match (options.wait, deadline) {
        (Wait::For(_), Some(deadline)) => {
            match deadline.saturating_duration_since(std::time::Instant::now()) {
                std::time::Duration::ZERO => Wait::No,
                left => Wait::For(left),
            }
        }
        (wait, _) => wait,
    }
}
