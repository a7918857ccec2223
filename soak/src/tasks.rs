//! The async ways: `#[exclusive]` async fns on a current-thread tokio
//! runtime, nested awaits of locked fns, and `tokio::time::timeout` that
//! cancels a wait or a body. Each call is a task of its own (a spawned task
//! is another holder), so a panic comes back through its `JoinHandle`.

use crate::body::{Body, Lane, pause};
use crate::journal::Exit;
use crate::plan::{BodyErr, Deliberate, Nest, Plan};
use crate::rng::Rng;
use crate::way::{Outcome, Way};
use crate::ways::SOAK;
use lockattr::{Lock, exclusive};
use std::time::Duration;

/// Waits `gap`: awaited (a point where a timeout can cancel the body) when
/// it is long enough for a timer.
async fn pause_async(gap: Duration) {
    if gap >= Duration::from_millis(1) {
        tokio::time::sleep(gap).await;
    } else {
        pause(gap);
    }
}

async fn work(body: &mut Body<'static>, plan: &Plan) -> Result<(), BodyErr> {
    pause_async(plan.before).await;
    if body.exclusive() {
        body.read_modify_write(plan.gap);
    }
    if let Some(inner) = plan.inner.as_deref() {
        let lane = body.lane();
        let inner = inner.clone();
        let (way, result) = match plan.nest {
            Nest::Shared => (Way::AsyncNestedInnerShared, inner_shared(lane, inner).await),
            _ => (Way::AsyncNestedInner, inner_exclusive(lane, inner).await),
        };
        if let Err(BodyErr::Lock(err)) = result {
            crate::worker::failure(lane, way, &format!("a nested async re-entry failed: {err}"));
        }
    }
    pause_async(plan.after).await;
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

/// Nested bodies do no nesting of their own: an async fn cannot await
/// itself without a box.
async fn work_leaf(body: &mut Body<'_>, plan: &Plan) -> Result<(), BodyErr> {
    pause_async(plan.before).await;
    if body.exclusive() {
        body.read_modify_write(plan.gap);
    }
    pause_async(plan.after).await;
    body.leaving(match plan.exit {
        Exit::Panic => Exit::Normal,
        exit => exit,
    });
    match plan.exit {
        Exit::Question => Err(BodyErr::Deliberate),
        _ => Ok(()),
    }
}

macro_rules! locked_async {
    ($(#[$attr:meta])* async fn $name:ident => $way:expr) => {
        $(#[$attr])*
        async fn $name(lane: &'static Lane, plan: Plan) -> Result<(), BodyErr> {
            let mut body = lane.enter($way);
            work(&mut body, &plan).await?;
            if plan.exit == Exit::Return {
                return Ok(());
            }
            Ok(())
        }
    };
}

locked_async!(#[exclusive(SOAK)] async fn try_exclusive => Way::AsyncTry);
locked_async!(#[exclusive(SOAK, wait)] async fn wait_exclusive => Way::AsyncWait);
locked_async!(#[exclusive(SOAK, wait = "300ms")] async fn wait_for_exclusive => Way::AsyncWaitFor);
locked_async!(#[exclusive(SOAK, shared, wait = "500ms")] async fn wait_for_shared => Way::AsyncSharedWaitFor);
locked_async!(#[exclusive(SOAK, wait)] async fn nested_outer => Way::AsyncNestedOuter);
locked_async!(#[exclusive(SOAK, wait)] async fn cancellable_exclusive => Way::AsyncCancel);
locked_async!(#[exclusive(SOAK, shared, wait)] async fn cancellable_shared => Way::AsyncSharedCancel);

#[exclusive(SOAK)]
async fn inner_exclusive(lane: &'static Lane, plan: Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::AsyncNestedInner);
    work_leaf(&mut body, &plan).await
}

#[exclusive(SOAK, shared)]
async fn inner_shared(lane: &'static Lane, plan: Plan) -> Result<(), BodyErr> {
    let mut body = lane.enter(Way::AsyncNestedInnerShared);
    work_leaf(&mut body, &plan).await
}

/// A guard from `Lock::acquire_async`, held across awaits, with a locked
/// fn awaited through `scope` (re-enters) while it holds.
async fn guard(lane: &'static Lane, plan: Plan, limit: Duration) -> Result<(), BodyErr> {
    let guard = Lock::new(SOAK).wait_for(limit).acquire_async().await?;
    let mut body = lane.enter(Way::AsyncGuard);
    pause_async(plan.before).await;
    body.read_modify_write(plan.gap);
    if let Some(inner) = plan.inner.clone()
        && let Err(BodyErr::Lock(err)) = guard.scope(inner_exclusive(lane, *inner)).await
    {
        let text = format!("a re-entry through AsyncGuard::scope failed: {err}");
        crate::worker::failure(lane, Way::AsyncNestedInner, &text);
    }
    pause_async(plan.after).await;
    body.leaving(Exit::Normal);
    Ok(())
}

/// The async ways a task draws from, with their weights.
pub const WAYS: [(u64, Way); 8] = [
    (12, Way::AsyncTry),
    (10, Way::AsyncWait),
    (10, Way::AsyncWaitFor),
    (10, Way::AsyncSharedWaitFor),
    (8, Way::AsyncNestedOuter),
    (10, Way::AsyncCancel),
    (6, Way::AsyncSharedCancel),
    (8, Way::AsyncGuard),
];

/// One call of `way`, as a task of its own. `Ok(None)`: a timeout cancelled
/// it (maybe mid-body).
pub async fn call(
    lane: &'static Lane,
    way: Way,
    rng: &mut Rng,
) -> Result<Option<Result<(), BodyErr>>, Box<dyn std::any::Any + Send>> {
    let mut plan = Plan::random(rng, way.exclusive(), true);
    if matches!(way, Way::AsyncNestedOuter | Way::AsyncGuard) {
        plan = plan.with_inner(rng);
    }
    if matches!(way, Way::AsyncCancel | Way::AsyncSharedCancel) && rng.chance(500) {
        // Long enough that the timeout often falls inside the body.
        plan.before = Duration::from_millis(rng.range(1, 200));
    }
    let limit = Duration::from_millis(rng.range(1, 300));
    let task = tokio::spawn(async move {
        match way {
            Way::AsyncTry => Some(try_exclusive(lane, plan).await),
            Way::AsyncWait => Some(wait_exclusive(lane, plan).await),
            Way::AsyncWaitFor => Some(wait_for_exclusive(lane, plan).await),
            Way::AsyncSharedWaitFor => Some(wait_for_shared(lane, plan).await),
            Way::AsyncNestedOuter => Some(nested_outer(lane, plan).await),
            Way::AsyncGuard => Some(guard(lane, plan, limit).await),
            Way::AsyncCancel => tokio::time::timeout(limit, cancellable_exclusive(lane, plan))
                .await
                .ok(),
            Way::AsyncSharedCancel => tokio::time::timeout(limit, cancellable_shared(lane, plan))
                .await
                .ok(),
            other => unreachable!("{other:?} is not drawn by a task"),
        }
    });
    task.await.map_err(|err| match err.try_into_panic() {
        Ok(payload) => payload,
        Err(err) => Box::new(format!("the task ended without a result: {err}")),
    })
}

/// What a cancelled call counts as when it never entered its body.
pub fn cancelled(lane: &Lane, way: Way) {
    lane.ctx.shm.count(way, Outcome::Cancelled);
}
