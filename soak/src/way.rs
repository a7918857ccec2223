//! Every way the harness takes the one lock, by number (the journal and the
//! shared counters name them so).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Way {
    /// `#[exclusive(SOAK)] fn`: try once.
    Try,
    /// `#[exclusive(SOAK, wait)] fn`.
    Wait,
    /// `#[exclusive(SOAK, wait = "300ms")] fn`.
    WaitFor,
    /// `#[exclusive(SOAK, shared)] fn`.
    SharedTry,
    /// `#[exclusive(SOAK, shared, wait = "500ms")] fn`.
    SharedWaitFor,
    /// `#[exclusive(SOAK, shared, wait)] fn`.
    SharedWait,
    /// An exclusive `wait` fn that calls locked fns of the same name.
    NestedOuter,
    /// A shared `wait` fn that calls locked fns of the same name.
    NestedSharedOuter,
    /// An exclusive try-once fn called inside an exclusive hold: re-enters.
    NestedInner,
    /// A shared try-once fn called inside a hold: re-enters.
    NestedInnerShared,
    /// An exclusive fn called inside a shared hold: must be refused
    /// (`WouldDeadlock`), never granted, never a hang.
    NestedUpgrade,
    /// `Lock::new(SOAK).acquire()` by hand.
    GuardTry,
    /// `Lock::new(SOAK).wait_for(..).acquire()`.
    GuardWaitFor,
    /// `Lock::new(SOAK).shared().wait().acquire()`.
    GuardSharedWait,
    /// `#[exclusive("{name}", wait = "300ms")] fn` called with `"soak"`.
    Templated,
    /// `LockName::from_template("{name}", ..)` at run time, then
    /// `Lock::new(..).wait_for(..).acquire()`.
    TemplatedGuard,
    /// `#[exclusive(SOAK, "soak-b", wait)] fn`: two locks, one order.
    TwoNames,
    /// `#[exclusive("soak-b", SOAK, wait)] fn`: the other way round.
    TwoNamesReversed,
    /// An exclusive `wait` fn that lends its hold to a scoped thread
    /// (`lockattr::lend`), which re-enters.
    Lent,
    /// `#[exclusive(SOAK)] async fn`: try once.
    AsyncTry,
    /// `#[exclusive(SOAK, wait)] async fn`.
    AsyncWait,
    /// `#[exclusive(SOAK, wait = "300ms")] async fn`.
    AsyncWaitFor,
    /// `#[exclusive(SOAK, shared, wait = "500ms")] async fn`.
    AsyncSharedWaitFor,
    /// An exclusive async fn that awaits locked async fns of the same name.
    AsyncNestedOuter,
    AsyncNestedInner,
    AsyncNestedInnerShared,
    /// `tokio::time::timeout` around an exclusive `wait` async fn: the
    /// wait or the body is cancelled when it runs out.
    AsyncCancel,
    /// The same, shared.
    AsyncSharedCancel,
    /// `Lock::new(SOAK).wait_for(..).acquire_async().await`, a nested
    /// locked fn awaited through `AsyncGuard::scope`.
    AsyncGuard,
    /// `( flock -n 9 || exit 75; body ) 9<"$lock"`.
    FlockTry,
    /// `flock -w 0.3 9`.
    FlockWaitFor,
    /// `flock 9`.
    FlockWait,
    /// `flock -s -w 0.5 9`.
    FlockShared,
}

pub const WAYS: usize = Way::FlockShared as usize + 1;

impl Way {
    pub fn from_u8(raw: u8) -> Option<Way> {
        Way::ALL.into_iter().find(|way| *way as u8 == raw)
    }

    pub const ALL: [Way; WAYS] = [
        Way::Try,
        Way::Wait,
        Way::WaitFor,
        Way::SharedTry,
        Way::SharedWaitFor,
        Way::SharedWait,
        Way::NestedOuter,
        Way::NestedSharedOuter,
        Way::NestedInner,
        Way::NestedInnerShared,
        Way::NestedUpgrade,
        Way::GuardTry,
        Way::GuardWaitFor,
        Way::GuardSharedWait,
        Way::Templated,
        Way::TemplatedGuard,
        Way::TwoNames,
        Way::TwoNamesReversed,
        Way::Lent,
        Way::AsyncTry,
        Way::AsyncWait,
        Way::AsyncWaitFor,
        Way::AsyncSharedWaitFor,
        Way::AsyncNestedOuter,
        Way::AsyncNestedInner,
        Way::AsyncNestedInnerShared,
        Way::AsyncCancel,
        Way::AsyncSharedCancel,
        Way::AsyncGuard,
        Way::FlockTry,
        Way::FlockWaitFor,
        Way::FlockWait,
        Way::FlockShared,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Way::Try => "#[exclusive] try-once",
            Way::Wait => "#[exclusive] wait",
            Way::WaitFor => "#[exclusive] wait = \"300ms\"",
            Way::SharedTry => "#[exclusive] shared",
            Way::SharedWaitFor => "#[exclusive] shared, wait = \"500ms\"",
            Way::SharedWait => "#[exclusive] shared, wait",
            Way::NestedOuter => "nested: exclusive outer",
            Way::NestedSharedOuter => "nested: shared outer",
            Way::NestedInner => "nested: exclusive re-entry",
            Way::NestedInnerShared => "nested: shared re-entry",
            Way::NestedUpgrade => "nested: exclusive in shared (refused)",
            Way::GuardTry => "Lock::acquire try-once",
            Way::GuardWaitFor => "Lock::wait_for().acquire",
            Way::GuardSharedWait => "Lock::shared().wait().acquire",
            Way::Templated => "#[exclusive(\"{name}\")] wait = \"300ms\"",
            Way::TemplatedGuard => "LockName::from_template, Lock::acquire",
            Way::TwoNames => "#[exclusive(SOAK, \"soak-b\", wait)]",
            Way::TwoNamesReversed => "#[exclusive(\"soak-b\", SOAK, wait)]",
            Way::Lent => "lend() to a scoped thread",
            Way::AsyncTry => "async try-once",
            Way::AsyncWait => "async wait",
            Way::AsyncWaitFor => "async wait = \"300ms\"",
            Way::AsyncSharedWaitFor => "async shared, wait = \"500ms\"",
            Way::AsyncNestedOuter => "async nested: outer",
            Way::AsyncNestedInner => "async nested: exclusive re-entry",
            Way::AsyncNestedInnerShared => "async nested: shared re-entry",
            Way::AsyncCancel => "async wait under timeout",
            Way::AsyncSharedCancel => "async shared wait under timeout",
            Way::AsyncGuard => "Lock::acquire_async, scope()",
            Way::FlockTry => "flock(1) -n",
            Way::FlockWaitFor => "flock(1) -w 0.3",
            Way::FlockWait => "flock(1)",
            Way::FlockShared => "flock(1) -s -w 0.5",
        }
    }

    pub fn exclusive(self) -> bool {
        !matches!(
            self,
            Way::SharedTry
                | Way::SharedWaitFor
                | Way::SharedWait
                | Way::NestedSharedOuter
                | Way::NestedInnerShared
                | Way::GuardSharedWait
                | Way::AsyncSharedWaitFor
                | Way::AsyncNestedInnerShared
                | Way::AsyncSharedCancel
                | Way::FlockShared
        )
    }

    /// The flock(1) script's letter for this way.
    pub fn flock_letter(self) -> Option<char> {
        match self {
            Way::FlockTry => Some('n'),
            Way::FlockWaitFor => Some('w'),
            Way::FlockWait => Some('W'),
            Way::FlockShared => Some('s'),
            _ => None,
        }
    }

    pub fn from_flock_letter(letter: char) -> Option<Way> {
        Way::ALL
            .into_iter()
            .find(|way| way.flock_letter() == Some(letter))
    }
}

/// What became of a request that did not run its body, per way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// Busy at once (try-once).
    Busy,
    /// Busy after waiting as long as allowed.
    TimedOut,
    /// An async wait dropped by its timeout before the body began.
    Cancelled,
    /// Refused as it must be (`WouldDeadlock` for an upgrade).
    Refused,
    /// The lock file was gone between `lock_path` and the script's open.
    FileGone,
    /// Anything else: a failure.
    Error,
}

pub const OUTCOMES: usize = Outcome::Error as usize + 1;

impl Outcome {
    pub const ALL: [Outcome; OUTCOMES] = [
        Outcome::Busy,
        Outcome::TimedOut,
        Outcome::Cancelled,
        Outcome::Refused,
        Outcome::FileGone,
        Outcome::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Busy => "busy",
            Outcome::TimedOut => "timed out",
            Outcome::Cancelled => "cancelled",
            Outcome::Refused => "refused",
            Outcome::FileGone => "file gone",
            Outcome::Error => "ERROR",
        }
    }
}

/// How long a way waits when the lock is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Busy at once.
    Once,
    /// Busy after a bounded wait (or a timeout's cancellation).
    Bounded,
    /// Never busy.
    Forever,
    /// Re-enters a hold the caller has: never busy, never waits.
    Reenters,
}

impl Way {
    pub fn patience(self) -> Patience {
        match self {
            Way::Try | Way::SharedTry | Way::GuardTry | Way::AsyncTry | Way::FlockTry => {
                Patience::Once
            }
            Way::WaitFor
            | Way::SharedWaitFor
            | Way::NestedSharedOuter
            | Way::GuardWaitFor
            | Way::AsyncWaitFor
            | Way::AsyncSharedWaitFor
            | Way::AsyncCancel
            | Way::AsyncSharedCancel
            | Way::Templated
            | Way::TemplatedGuard
            | Way::AsyncGuard
            | Way::FlockWaitFor
            | Way::FlockShared => Patience::Bounded,
            Way::Wait
            | Way::SharedWait
            | Way::NestedOuter
            | Way::GuardSharedWait
            | Way::AsyncWait
            | Way::AsyncNestedOuter
            | Way::TwoNames
            | Way::TwoNamesReversed
            | Way::Lent
            | Way::FlockWait => Patience::Forever,
            Way::NestedInner
            | Way::NestedInnerShared
            | Way::NestedUpgrade
            | Way::AsyncNestedInner
            | Way::AsyncNestedInnerShared => Patience::Reenters,
        }
    }
}
