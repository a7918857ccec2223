//! The synchronous ways to take the lock: annotated functions with each
//! option, nested re-entry, and guards from `Lock::acquire`. Each leaves by
//! the plan's exit: normal, `return`, `?`, or a panic.

use crate::body::{Body, Lane, pause};
use crate::journal::Exit;
use crate::plan::{BodyErr, Deliberate, Nest, Plan};
use crate::rng::Rng;
use crate::way::Way;
use lockattr::{ErrorKind, Lock, LockName, exclusive, lend};
use std::time::Duration;

/// The one lock every participant takes, in the directory the process
/// pinned with `lockattr::set_default_dir`.
pub const SOAK: LockName = LockName::new("soak");

/// Holds, does the counter's read-modify-write, makes the nested call, then
/// sets how the locked function is about to be left.
fn work(
    body: &mut Body<'_>,
    plan: &Plan,
    nested: impl FnOnce() -> Result<(), String>,
) -> Result<(), BodyErr> {
    pause(plan.before);
    if body.exclusive() {
        body.read_modify_write(plan.gap);
    }
    if let Err(failure) = nested() {
        crate::worker::failure(body.lane(), body.way(), &failure);
    }
    pause(plan.after);
    match plan.exit {
        Exit::Panic => std::panic::panic_any(Deliberate),
        Exit::Question => {
            body.leaving(Exit::Question);
            Err(BodyErr::Deliberate)
        }
        exit => {
            body.leaving(exit);
            Ok(())
        }
    }
}

/// An annotated function whose body is one body of `$way`.
macro_rules! locked {
    ($(#[$attr:meta])* fn $name:ident => $way:expr) => {
        $(#[$attr])*
        fn $name(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
            let mut body = lane.enter($way);
            work(&mut body, plan, || Ok(()))?;
            if plan.exit == Exit::Return {
                return Ok(());
            }
            Ok(())
        }
    };
}

locked!(#[exclusive(SOAK)] fn try_exclusive => Way::Try);
locked!(#[exclusive(SOAK, wait)] fn wait_exclusive => Way::Wait);
locked!(#[exclusive(SOAK, wait = "300ms")] fn wait_for_exclusive => Way::WaitFor);
locked!(#[exclusive(SOAK, shared)] fn try_shared => Way::SharedTry);
locked!(#[exclusive(SOAK, shared, wait = "500ms")] fn wait_for_shared => Way::SharedWaitFor);
locked!(#[exclusive(SOAK, shared, wait)] fn wait_shared => Way::SharedWait);
locked!(#[exclusive(SOAK)] fn inner_exclusive => Way::NestedInner);
locked!(#[exclusive(SOAK, shared)] fn inner_shared => Way::NestedInnerShared);

/// Inside a shared hold: must be refused, never run.
#[exclusive(SOAK)]
fn upgrade(lane: &Lane) -> Result<(), BodyErr> {
    let _body = lane.enter(Way::NestedUpgrade);
    Ok(())
}

#[exclusive(SOAK, wait)]
fn nested_outer(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::NestedOuter);
    work(&mut body, plan, || nest(lane, plan))?;
    if plan.exit == Exit::Return {
        return Ok(());
    }
    Ok(())
}

#[exclusive(SOAK, shared, wait = "1s")]
fn nested_shared_outer(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::NestedSharedOuter);
    work(&mut body, plan, || nest(lane, plan))?;
    Ok(())
}

/// The nested call: a re-entry must run its body, an upgrade must be
/// refused as a would-be deadlock. Anything else is a failure, described.
fn nest(lane: &Lane, plan: &Plan) -> Result<(), String> {
    let inner = plan
        .inner
        .as_deref()
        .expect("a nested way has an inner plan");
    let nest = plan.nest;
    let (way, result) = match nest {
        Nest::Exclusive => (Way::NestedInner, inner_exclusive(lane, inner)),
        Nest::Shared => (Way::NestedInnerShared, inner_shared(lane, inner)),
        Nest::Upgrade => (Way::NestedUpgrade, upgrade(lane)),
    };
    match (nest, result) {
        (Nest::Upgrade, Err(BodyErr::Lock(err))) if err.kind() == ErrorKind::WouldDeadlock => {
            lane.ctx.shm.count(way, crate::way::Outcome::Refused);
            Ok(())
        }
        (Nest::Upgrade, other) => Err(format!(
            "an exclusive request inside a shared hold was not refused: {other:?}"
        )),
        (_, Ok(()) | Err(BodyErr::Deliberate)) => Ok(()),
        (_, Err(BodyErr::Lock(err))) => Err(format!("a nested re-entry failed: {err}")),
    }
}

/// A name from an argument: `"{name}"` with `"soak"` is the same lock.
#[exclusive("{name}", wait = "300ms")]
fn templated(name: &str, lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::Templated);
    work(&mut body, plan, || Ok(()))
}

fn templated_guard(lane: &Lane, plan: &Plan, limit: Duration) -> Result<(), BodyErr> {
    let name = LockName::from_template("{name}", &[("name", &SOAK.as_str())])?;
    let _guard = Lock::new(name).wait_for(limit).acquire()?;
    let mut body = lane.enter(Way::TemplatedGuard);
    work(&mut body, plan, || Ok(()))
}

// Two locks, named in both orders by different functions: taken in one
// global order, so callers of the two never deadlock (the hang check).
#[exclusive(SOAK, "soak-b", wait)]
fn two_names(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::TwoNames);
    work(&mut body, plan, || Ok(()))
}

#[exclusive("soak-b", SOAK, wait)]
fn two_names_reversed(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::TwoNamesReversed);
    work(&mut body, plan, || Ok(()))
}

/// Lends its hold to a scoped thread, whose try-once must re-enter.
#[exclusive(SOAK, wait)]
fn lent(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::Lent);
    let inner = plan
        .inner
        .as_deref()
        .expect("a nested way has an inner plan");
    let lent = lend();
    work(&mut body, plan, || {
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| lent.run(|| inner_exclusive(lane, inner)))
                .join()
        });
        match result {
            Ok(Ok(()) | Err(BodyErr::Deliberate)) => Ok(()),
            Ok(Err(BodyErr::Lock(err))) => {
                Err(format!("a re-entry on a lent thread failed: {err}"))
            }
            Err(_) => Err("the lent thread panicked".to_owned()),
        }
    })
}

fn guard_try(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let _guard = Lock::new(SOAK).acquire()?;
    let mut body = lane.enter(Way::GuardTry);
    work(&mut body, plan, || Ok(()))
}

fn guard_wait_for(lane: &Lane, plan: &Plan, limit: Duration) -> Result<(), BodyErr> {
    let _guard = Lock::new(SOAK).wait_for(limit).acquire()?;
    let mut body = lane.enter(Way::GuardWaitFor);
    work(&mut body, plan, || Ok(()))?;
    if plan.exit == Exit::Return {
        return Ok(());
    }
    Ok(())
}

fn guard_shared_wait(lane: &Lane, plan: &Plan) -> Result<(), BodyErr> {
    let _guard = Lock::new(SOAK).shared().wait().acquire()?;
    let mut body = lane.enter(Way::GuardSharedWait);
    work(&mut body, plan, || Ok(()))
}

/// The synchronous ways a thread draws from, with their weights.
pub const WAYS: [(u64, Way); 16] = [
    (14, Way::Try),
    (10, Way::Wait),
    (10, Way::WaitFor),
    (8, Way::SharedTry),
    (8, Way::SharedWaitFor),
    (5, Way::SharedWait),
    (8, Way::NestedOuter),
    (6, Way::NestedSharedOuter),
    (8, Way::GuardTry),
    (8, Way::GuardWaitFor),
    (5, Way::GuardSharedWait),
    (4, Way::Templated),
    (4, Way::TemplatedGuard),
    (3, Way::TwoNames),
    (3, Way::TwoNamesReversed),
    (4, Way::Lent),
];

/// One call of `way`.
pub fn call(lane: &Lane, way: Way, rng: &mut Rng) -> Result<(), BodyErr> {
    let plan = Plan::random(rng, way.exclusive(), true).with_inner(rng);
    match way {
        Way::Try => try_exclusive(lane, &plan),
        Way::Wait => wait_exclusive(lane, &plan),
        Way::WaitFor => wait_for_exclusive(lane, &plan),
        Way::SharedTry => try_shared(lane, &plan),
        Way::SharedWaitFor => wait_for_shared(lane, &plan),
        Way::SharedWait => wait_shared(lane, &plan),
        Way::NestedOuter => nested_outer(lane, &plan),
        Way::NestedSharedOuter => nested_shared_outer(lane, &plan),
        Way::GuardTry => guard_try(lane, &plan),
        Way::GuardWaitFor => guard_wait_for(lane, &plan, Duration::from_millis(rng.range(1, 500))),
        Way::GuardSharedWait => guard_shared_wait(lane, &plan),
        Way::Templated => templated(SOAK.as_str(), lane, &plan),
        Way::TemplatedGuard => {
            templated_guard(lane, &plan, Duration::from_millis(rng.range(1, 500)))
        }
        Way::TwoNames => two_names(lane, &plan),
        Way::TwoNamesReversed => two_names_reversed(lane, &plan),
        Way::Lent => lent(lane, &plan),
        other => unreachable!("{other:?} is not drawn by a thread"),
    }
}
