//! What one body does: how long it holds the lock, where its
//! read-modify-write falls, what it calls nested, and how it leaves.

use crate::journal::Exit;
use crate::rng::Rng;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Plan {
    /// Held before the counter's read-modify-write.
    pub before: Duration,
    /// Between the counter's read and its write.
    pub gap: Duration,
    /// Held after it.
    pub after: Duration,
    pub exit: Exit,
    /// For the nested ways: what the body calls while it holds the lock,
    /// and that call's plan.
    pub nest: Nest,
    pub inner: Option<Box<Plan>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nest {
    /// An exclusive try-once fn: re-enters (inside an exclusive hold).
    Exclusive,
    /// A shared try-once fn: re-enters.
    Shared,
    /// An exclusive fn inside a shared hold: refused.
    Upgrade,
}

impl Plan {
    /// Mostly short holds, so that hand-offs are many; a few long ones, so
    /// that waiters pile up, time out and get cancelled, and a file removed
    /// under a holder stays removed under it a while.
    pub fn random(rng: &mut Rng, exclusive_outer: bool, may_panic: bool) -> Plan {
        let hold = rng.weighted(&[
            (750, (0, 100)),
            (200, (200, 5_000)),
            (47, (10_000, 100_000)),
            (3, (1_000_000, 2_500_000)),
        ]);
        let hold = rng.range(hold.0, hold.1);
        let before = rng.below(hold + 1);
        let gap = rng.weighted(&[(5, (0, 0)), (3, (1, 50)), (2, (50, 300))]);
        let gap = rng.range(gap.0, gap.1);
        let exit = rng.weighted(&[
            (880, Exit::Normal),
            (40, Exit::Return),
            (40, Exit::Question),
            (if may_panic { 40 } else { 0 }, Exit::Panic),
        ]);
        let nest = match exclusive_outer {
            true => rng.weighted(&[(1, Nest::Exclusive), (1, Nest::Shared)]),
            false => rng.weighted(&[(3, Nest::Shared), (1, Nest::Upgrade)]),
        };
        Plan {
            before: Duration::from_micros(before),
            gap: Duration::from_micros(gap),
            after: Duration::from_micros(hold - before),
            exit,
            nest,
            inner: None,
        }
    }

    /// The same, with a plan for the nested call.
    pub fn with_inner(mut self, rng: &mut Rng) -> Plan {
        self.inner = Some(Box::new(Plan::inner(rng)));
        self
    }

    /// For a nested body: short, and it leaves without a panic.
    pub fn inner(rng: &mut Rng) -> Plan {
        let mut plan = Plan::random(rng, true, false);
        plan.before = plan.before.min(Duration::from_millis(2));
        plan.after = plan.after.min(Duration::from_millis(2));
        plan
    }
}

/// What a locked function of the harness returns on error: the lock's, or
/// its own (`?` on [`BodyErr::Deliberate`], which must come back
/// untouched).
#[derive(Debug)]
pub enum BodyErr {
    Lock(lockattr::Error),
    Deliberate,
}

impl From<lockattr::Error> for BodyErr {
    fn from(err: lockattr::Error) -> BodyErr {
        BodyErr::Lock(err)
    }
}

/// The payload of a deliberate panic (the panic hook keeps it quiet).
pub struct Deliberate;
