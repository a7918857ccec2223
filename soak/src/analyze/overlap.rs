//! Which bodies ran at once, and whether a loss of the lock explains it.

use super::{Body, Loss, Overlap, Proc, describe};
use crate::shm;
use std::collections::HashMap;

/// How long before its hold began (as the journal sees it) a removal still
/// counts as made while held: the time between lockattr's check of the
/// path and the body's first record, which is microseconds unless the
/// thread waits for a CPU (time the process spent stopped is added).
pub const SLACK: u64 = 200_000_000;

/// Bodies of one process on one file (or one server) that overlap share
/// one hold.
pub(super) fn hold_starts(bodies: &mut [Body], database: bool) {
    let mut groups: HashMap<(u8, u32, u64), Vec<usize>> = HashMap::new();
    for (i, b) in bodies
        .iter()
        .enumerate()
        .filter(|(_, b)| database || b.file != 0)
    {
        groups.entry((b.slot, b.inc, b.file)).or_default().push(i);
    }
    for members in groups.values_mut() {
        members.sort_by_key(|&i| bodies[i].t0);
        let (mut start, mut reach) = (0, 0);
        for &i in members.iter() {
            if bodies[i].t0 >= reach {
                start = bodies[i].t0;
            }
            reach = reach.max(bodies[i].end);
            bodies[i].hold_start = start;
        }
    }
}

/// Every pair of outermost bodies of different holders that ran at once,
/// one of them exclusive, with its verdict.
pub(super) fn overlaps(
    bodies: &[Body],
    losses: &[Loss],
    procs: &HashMap<(u8, u32), Proc>,
    database: bool,
) -> Vec<Overlap> {
    let mut order: Vec<usize> = (0..bodies.len())
        .filter(|&i| bodies[i].outer.is_none())
        .collect();
    order.sort_by_key(|&i| bodies[i].t0);
    let mut active: Vec<usize> = Vec::new();
    let mut found = Vec::new();
    for &i in &order {
        let b = &bodies[i];
        active.retain(|&j| bodies[j].end > b.t0);
        for &j in &active {
            let a = &bodies[j];
            let same_holder = (a.slot, a.inc, a.lane) == (b.slot, b.inc, b.lane);
            if same_holder || !(a.exclusive || b.exclusive) {
                continue;
            }
            found.push(Overlap {
                a: j,
                b: i,
                verdict: verdict(a, b, losses, procs, database),
            });
        }
        active.push(i);
    }
    found
}

pub(super) fn verdict(
    a: &Body,
    b: &Body,
    losses: &[Loss],
    procs: &HashMap<(u8, u32), Proc>,
    database: bool,
) -> Result<(usize, u64), &'static str> {
    if (a.slot, a.inc) == (b.slot, b.inc) {
        return Err("two holders in one process");
    }
    let files = !database;
    if files && (a.file == 0 || b.file == 0) {
        return Err("one held no flock");
    }
    if files && a.file == b.file {
        return Err("both held flocks on the same file");
    }
    explains(a, b, losses, procs)
        .or_else(|| explains(b, a, losses, procs))
        .ok_or(match files {
            true => "no removal of the lock file while it was held explains it",
            false => "no session ended while it was held explains it",
        })
}

/// A loss of `x`'s lock after `x`'s hold began (within the slack) and
/// before `y` began: the loss and how long before the hold it came.
pub(super) fn explains(
    x: &Body,
    y: &Body,
    losses: &[Loss],
    procs: &HashMap<(u8, u32), Proc>,
) -> Option<(usize, u64)> {
    let proc = procs.get(&(x.slot, x.inc));
    losses.iter().enumerate().find_map(|(i, loss)| {
        if !loss.takes(x) || loss.before > y.t0 {
            return None;
        }
        let stopped = proc.map_or(0, |p| p.stopped_within(loss.before, x.hold_start));
        let earliest = x.hold_start.saturating_sub(SLACK + stopped);
        (loss.after >= earliest).then(|| (i, x.hold_start.saturating_sub(loss.after)))
    })
}

/// Each occupancy bit a body saw set names a holder that was inside: the
/// journal must show that holder's body overlapping, with a verdict.
pub(super) fn occupancy(
    bodies: &[Body],
    overlaps: &[Overlap],
    failures: &mut Vec<(u64, String)>,
) -> (u64, u64) {
    let mut pairs: HashMap<usize, Vec<usize>> = HashMap::new();
    for (k, o) in overlaps.iter().enumerate() {
        pairs.entry(o.a).or_default().push(k);
        pairs.entry(o.b).or_default().push(k);
    }
    let (mut explained, mut unexplained) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        let mut bits = b.bits.0 | b.bits.1;
        while bits != 0 {
            let (slot, lane) = shm::lane_of(bits.trailing_zeros());
            bits &= bits - 1;
            let verdict = pairs.get(&i).into_iter().flatten().find_map(|&k| {
                let o = &overlaps[k];
                let other = &bodies[if o.a == i { o.b } else { o.a }];
                ((other.slot as usize, other.lane as usize) == (slot, lane))
                    .then_some(o.verdict.is_ok())
            });
            if verdict == Some(true) {
                explained += 1;
            } else {
                unexplained += 1;
                if verdict.is_none() {
                    failures.push((
                        b.t0,
                        format!(
                            "occupancy showed slot {slot} lane {lane} inside, and the journal no \
                             body of it: {}",
                            describe(b)
                        ),
                    ));
                }
            }
        }
    }
    (explained, unexplained)
}
