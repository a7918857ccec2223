//! What an `#[exclusive]` function returns when it cannot take its lock.
#![allow(missing_docs)] // reached only through `__private`

use crate::error::Error;
use std::marker::PhantomData;

/// The busy and failure outcome of a return type, used when the attribute
/// has no `on_busy`: `()` prints one line when busy and panics on a setup
/// failure; `Result<T, E>` returns `Err(E::from(err))` for both.
#[diagnostic::on_unimplemented(
    message = "`#[exclusive]` does not know what a function returning `{Self}` should return when the lock is busy",
    label = "no busy outcome for `{Self}`",
    note = "add `on_busy = ...` with the value to return, as in `#[exclusive(\"name\", on_busy = Default::default())]`, or a closure that makes it from the busy `lockattr::Error`, as in `on_busy = |err| ...`",
    note = "without `on_busy`, return `()` or `Result<_, E>` where `E: From<lockattr::Error>` (such as `anyhow::Error`, `Box<dyn Error>` or `std::io::Error`)"
)]
pub trait Outcome: Sized {
    /// Another holder has the lock.
    fn busy(err: Error) -> Self;

    /// The lock could not be set up.
    fn failed(err: Error) -> Self;

    /// Dispatches on [`Error::is_busy`].
    #[track_caller]
    fn from_error(err: Error) -> Self {
        if err.is_busy() {
            Self::busy(err)
        } else {
            Self::failed(err)
        }
    }
}

#[diagnostic::do_not_recommend]
impl Outcome for () {
    fn busy(err: Error) {
        crate::messages::busy(&err);
    }

    #[track_caller]
    fn failed(err: Error) {
        fail(err)
    }
}

#[diagnostic::do_not_recommend]
impl<T, E: From<Error>> Outcome for Result<T, E> {
    fn busy(err: Error) -> Self {
        Err(E::from(err))
    }

    fn failed(err: Error) -> Self {
        Err(E::from(err))
    }
}

/// A setup failure in a function that cannot return it.
#[track_caller]
pub fn fail(err: Error) -> ! {
    panic!("lockattr: {err}")
}

/// With `on_busy`, a setup failure still follows the return type: `Err` for
/// `Result<T, E: From<Error>>`, a panic for any other type. Autoref
/// specialization picks the first (`FailAsErr`, found on `&Fail<R>`) over
/// the second (`FailAsPanic`, found one autoref later).
pub struct Fail<R>(PhantomData<R>);

impl<R> Fail<R> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Fail<R> {
        Fail(PhantomData)
    }
}

pub trait FailAsErr<R> {
    fn fail(&self, err: Error) -> R;
}

impl<T, E: From<Error>> FailAsErr<Result<T, E>> for Fail<Result<T, E>> {
    fn fail(&self, err: Error) -> Result<T, E> {
        Err(E::from(err))
    }
}

pub trait FailAsPanic<R> {
    fn fail(&self, err: Error) -> R;
}

impl<R> FailAsPanic<R> for &Fail<R> {
    #[track_caller]
    fn fail(&self, err: Error) -> R {
        fail(err)
    }
}

/// A sync function whose return type is a future would release the lock
/// when it returns the future, before the future runs. The macro takes
/// `#[async_trait]`'s shape (the lock goes inside the future) and rejects
/// the others it can see (`impl Future`, `Pin<Box<dyn Future>>` with
/// another body); this catches the rest (a type alias, a named future) by
/// type, again by autoref specialization.
pub struct Check<R>(PhantomData<R>);

impl<R> Check<R> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Check<R> {
        Check(PhantomData)
    }
}

pub trait ReturnsFuture {
    fn kind(&self) -> FutureReturned {
        FutureReturned
    }
}

impl<R: std::future::IntoFuture> ReturnsFuture for Check<R> {}

pub trait ReturnsValue {
    fn kind(&self) -> ValueReturned {
        ValueReturned
    }
}

impl<R> ReturnsValue for &Check<R> {}

pub struct FutureReturned;
pub struct ValueReturned;

#[diagnostic::on_unimplemented(
    message = "`#[exclusive]` on a function that is not `async` but returns a future",
    label = "the lock would be released when this returns the future, before the future runs",
    note = "make it an `async fn` (in a trait too: a native `async fn`), or, for a trait object, put `#[async_trait]` on the trait and its impl and `#[exclusive]` on the `async fn` inside the impl"
)]
pub trait NotAFuture {}

#[diagnostic::do_not_recommend]
impl NotAFuture for ValueReturned {}

pub fn not_a_future<K: NotAFuture>(_: K) {}
