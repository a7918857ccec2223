//! What else the journal must show: the counter's writes add up, shared
//! bodies see it unchanged, fencing tokens grow, holders that lost their
//! file warn.

use super::{Body, Counter, Loss, LossKind, Overlap, Proc, describe};
use crate::journal::flag;
use std::collections::{BTreeMap, HashMap, HashSet};

/// PostgreSQL mode: a hold that began after another ended must have a
/// larger fencing token. Returns how many did not.
pub(super) fn tokens(bodies: &[Body], failures: &mut Vec<(u64, String)>) -> u64 {
    let mut by_start: Vec<&Body> = bodies
        .iter()
        .filter(|b| b.token != 0 && b.outer.is_none())
        .collect();
    let mut by_end = by_start.clone();
    by_start.sort_by_key(|b| b.t0);
    by_end.sort_by_key(|b| b.end);
    let (mut ended, mut highest, mut regressions) = (0, None::<&Body>, 0);
    for b in by_start {
        while ended < by_end.len() && by_end[ended].end <= b.t0 {
            if highest.is_none_or(|h| by_end[ended].token > h.token) {
                highest = Some(by_end[ended]);
            }
            ended += 1;
        }
        if let Some(h) = highest.filter(|h| h.token >= b.token) {
            regressions += 1;
            failures.push((
                b.t0,
                format!(
                    "fencing token {} after a hold that ended with {}: {} after {}",
                    b.token,
                    h.token,
                    describe(b),
                    describe(h)
                ),
            ));
        }
    }
    regressions
}

/// The holds (of worker processes: flock(1) scripts do not warn) that
/// spanned the removal of their file and whose last body ended normally:
/// lockattr must have noticed each when it let go, and said so.
pub(super) fn warnings_due(
    bodies: &[Body],
    losses: &[Loss],
    procs: &HashMap<(u8, u32), Proc>,
) -> u64 {
    // Each hold: its file, first entry, last exit, and whether it ended by
    // a kill.
    let mut holds: HashMap<(u8, u32, u64, u64), (u64, bool)> = HashMap::new();
    for b in bodies.iter().filter(|b| b.file != 0) {
        let flock = procs
            .get(&(b.slot, b.inc))
            .is_some_and(|p| p.flags & flag::FLOCK != 0);
        if flock {
            continue;
        }
        let hold = holds
            .entry((b.slot, b.inc, b.file, b.hold_start))
            .or_insert((0, false));
        if b.end >= hold.0 {
            *hold = (b.end, b.killed);
        }
    }
    let mut due = 0;
    for loss in losses {
        let (LossKind::Delete(file) | LossKind::Replace(file)) = loss.kind else {
            continue;
        };
        due += holds
            .iter()
            .filter(|&(&(_, _, f, start), &(end, killed))| {
                f == file && start <= loss.before && end >= loss.after && !killed
            })
            .count() as u64;
    }
    due
}

/// The outermost body of `i`.
pub(super) fn outermost(bodies: &[Body], by_id: &HashMap<u64, usize>, i: usize) -> usize {
    bodies[i]
        .outer
        .and_then(|id| by_id.get(&id).copied())
        .unwrap_or(i)
}

/// The counter: every write that landed (completed bodies, and killed
/// bodies whose id a later reader, even one killed before it wrote, or the
/// file itself names) adds one,
/// minus the updates lost to two bodies writing the same value. A lost
/// update is explained only by an explained overlap of its writers.
pub(super) fn counter_check(
    bodies: &[Body],
    overlaps: &[Overlap],
    reads: &[(u64, u64, u64)],
    (value, last_writer): (u64, u64),
    end: u64,
    failures: &mut Vec<(u64, String)>,
) -> Counter {
    let by_id: HashMap<u64, usize> = bodies.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
    let ok_pairs: HashSet<(usize, usize)> = overlaps
        .iter()
        .filter(|o| o.verdict.is_ok())
        .flat_map(|o| [(o.a, o.b), (o.b, o.a)])
        .collect();
    // What each writer wrote: completed writes say so; a killed writer's
    // value is what its reader read (or the file's value if it wrote last).
    let mut written: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut counter = Counter {
        value,
        ..Counter::default()
    };
    let mut read_from: HashMap<u64, u64> = reads.iter().map(|&(_, w, v)| (w, v)).collect();
    read_from.insert(last_writer, value);
    let prev_writer: HashMap<u64, u64> = reads.iter().map(|&(r, w, _)| (r, w)).collect();
    for (i, b) in bodies.iter().enumerate().filter(|(_, b)| b.exclusive) {
        if b.rmw.2 != 0 {
            counter.completed_writes += 1;
            written.entry(b.rmw.2).or_default().push(i);
        } else if b.killed
            && let Some(&v) = read_from.get(&b.id)
        {
            counter.killed_landed += 1;
            written.entry(v).or_default().push(i);
        }
    }
    let landed = counter.completed_writes + counter.killed_landed;
    counter.lost = landed as i64 - value as i64;
    // Two bodies write one value when both read the value before it: they
    // overlapped, or the later one read a value written late by a holder
    // that had lost its lock (stopped mid-write, its file removed or its
    // session ended meanwhile), which rolled the counter back; that write
    // is then itself one of an explained pair. Lower values first.
    let mut explained_writers: HashSet<u64> = HashSet::new();
    for (v, writers) in written.iter().filter(|(_, w)| w.len() > 1) {
        let outers: Vec<usize> = writers
            .iter()
            .map(|&i| outermost(bodies, &by_id, i))
            .collect();
        let rolled_back = |i: usize| {
            prev_writer
                .get(&bodies[i].id)
                .is_some_and(|w| explained_writers.contains(w))
        };
        let all_explained = (0..writers.len()).all(|n| {
            (n + 1..writers.len()).all(|m| {
                let (x, y) = (outers[n], outers[m]);
                let later = if bodies[writers[n]].t0 > bodies[writers[m]].t0 {
                    n
                } else {
                    m
                };
                x == y || ok_pairs.contains(&(x, y)) || rolled_back(writers[later])
            })
        });
        if all_explained {
            counter.lost_explained += writers.len() as u64 - 1;
            explained_writers.extend(writers.iter().map(|&i| bodies[i].id));
        } else {
            let b = &bodies[writers[1]];
            failures.push((
                b.t0,
                format!(
                    "{} bodies wrote counter value {v}; not all overlaps explained",
                    writers.len()
                ),
            ));
        }
    }
    if counter.lost < 0 {
        failures.push((
            end,
            format!(
                "the counter is {} ahead of the writes that landed",
                -counter.lost
            ),
        ));
    } else if counter.lost as u64 > counter.lost_explained {
        failures.push((
            end,
            format!(
                "{} lost updates of the counter that no explained overlap accounts for",
                counter.lost as u64 - counter.lost_explained
            ),
        ));
    }
    counter
}

/// A shared body must see the counter unchanged: a change means an
/// exclusive body ran beside it, which needs an explained overlap.
pub(super) fn shared_check(
    bodies: &[Body],
    overlaps: &[Overlap],
    failures: &mut Vec<(u64, String)>,
) -> (u64, u64) {
    let by_id: HashMap<u64, usize> = bodies.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
    let mut verdicts: HashMap<usize, bool> = HashMap::new();
    for o in overlaps {
        for (x, y) in [(o.a, o.b), (o.b, o.a)] {
            if bodies[y].exclusive {
                let ok = verdicts.entry(x).or_insert(true);
                *ok &= o.verdict.is_ok();
            }
        }
    }
    let (mut explained, mut unexplained) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        if b.exclusive || b.exit.is_none() || b.seen.0 == b.seen.1 {
            continue;
        }
        match verdicts.get(&outermost(bodies, &by_id, i)) {
            Some(true) => explained += 1,
            _ => {
                unexplained += 1;
                failures.push((
                    b.t0,
                    format!(
                        "the counter changed from {} to {} under a shared body: {}",
                        b.seen.0,
                        b.seen.1,
                        describe(b)
                    ),
                ));
            }
        }
    }
    (explained, unexplained)
}
