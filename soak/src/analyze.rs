//! The replay: reads the journal after the run and decides, without trusting
//! lockattr, whether two bodies ever ran at once, whether an update of the
//! counter was lost, and whether each such thing is explained by an event
//! that lockattr documents it cannot prevent.
//!
//! The one such event is the lock file removed or replaced while held: the
//! holder keeps its flock on a file that has no name any more, and the next
//! caller locks the new file. (In PostgreSQL mode it is the holder's
//! session ended under it: its backend terminated, or the server
//! restarted; the server lets go of the lock, and the holder is told only
//! by its heartbeat.) An overlap of bodies A and B is explained only
//! if they held flocks on two different files (the kernel says which, at
//! entry: `held.rs`), and the file of one of them, say A, was removed after
//! A's process began holding it and before B began. "Began holding" is the
//! start of the process's hold of that file: bodies of one process on one
//! file that overlap share one hold (shared holders join it without looking
//! at the path again). lockattr checks the path after it locks, and the body
//! writes its entry right after lockattr returns; a removal in that short
//! gap is also one it cannot see, so a removal up to [`SLACK`] before the
//! hold began (plus any time the process spent stopped by the chaos loop)
//! still counts as "while held". A removal earlier than that, before the
//! lock was taken, is exactly what the path check exists for: an overlap
//! it leads to is a failure.

use crate::fileid;
use crate::journal::{Exit, Kind, Oops, Record, flag};
use crate::shm;
use crate::way::{OUTCOMES, Outcome, Patience, WAYS, Way};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How long before its hold began (as the journal sees it) a removal still
/// counts as made while held: the time between lockattr's check of the
/// path and the body's first record, which is microseconds unless the
/// thread waits for a CPU (time the process spent stopped is added).
pub const SLACK: u64 = 200_000_000;

/// One process in a slot: when it was killed and stopped.
#[derive(Default, Debug)]
struct Proc {
    flags: u8,
    kill: Option<u64>,
    reap: Option<u64>,
    stop_open: Option<u64>,
    stops: Vec<(u64, u64)>,
}

impl Proc {
    /// Time stopped within `from..to`.
    fn stopped_within(&self, from: u64, to: u64) -> u64 {
        self.stops
            .iter()
            .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }
}

#[derive(Debug)]
pub struct Body {
    pub id: u64,
    pub slot: u8,
    pub inc: u32,
    pub lane: u8,
    pub way: Way,
    pub exclusive: bool,
    /// For a nested body, the body it is nested in.
    pub outer: Option<u64>,
    pub t0: u64,
    pub end: u64,
    pub exit: Option<Exit>,
    pub killed: bool,
    pub vanished: bool,
    pub file: u64,
    pub wait: u64,
    /// PostgreSQL mode: the hold's fencing token (0: not asked).
    pub token: u64,
    pub bits: (u64, u64),
    pub no_flock: bool,
    pub wrong_mode: bool,
    /// Exclusive: read, writer read, written (0: none).
    pub rmw: (u64, u64, u64),
    /// Shared: the counter at entry and at exit.
    pub seen: (u64, u64),
    /// The start of its process's hold of its file.
    pub hold_start: u64,
}

/// An event that takes a lock away from its holder, between `before` and
/// `after`.
#[derive(Debug)]
pub struct Loss {
    pub kind: LossKind,
    pub before: u64,
    pub after: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// The lock file (this one) was deleted.
    Delete(u64),
    /// The lock file (this one) was replaced.
    Replace(u64),
    /// A backend of this process (slot, incarnation) was terminated; true
    /// if it was the session of the soak's lock.
    Terminate(u8, u32, bool),
    Restart,
}

impl Loss {
    pub fn describe(&self) -> String {
        match self.kind {
            LossKind::Delete(file) => format!("{} deleted", fileid::show(file)),
            LossKind::Replace(file) => format!("{} replaced", fileid::show(file)),
            LossKind::Terminate(slot, inc, _) => {
                format!("backend of slot {slot} inc {inc} terminated")
            }
            LossKind::Restart => "server restarted".to_owned(),
        }
    }

    /// Whether it takes away `body`'s lock.
    fn takes(&self, body: &Body) -> bool {
        match self.kind {
            LossKind::Delete(file) | LossKind::Replace(file) => file == body.file,
            LossKind::Terminate(slot, inc, soak) => soak && (slot, inc) == (body.slot, body.inc),
            LossKind::Restart => true,
        }
    }
}

#[derive(Debug)]
pub struct Overlap {
    pub a: usize,
    pub b: usize,
    /// The removal that explains it, and how long before the hold began it
    /// was made (0: after); or why nothing does.
    pub verdict: Result<(usize, u64), &'static str>,
}

#[derive(Default, Debug)]
pub struct Analysis {
    pub seed: u64,
    pub start: u64,
    pub end: u64,
    pub spawned: [u64; 3],
    pub other_user: u64,
    pub umask_077: u64,
    pub kills: u64,
    pub holder_kills: u64,
    pub stops: u64,
    pub longest_stop: u64,
    /// PostgreSQL mode: no lock files; an entry's `a` is a fencing token.
    pub database: bool,
    pub losses: Vec<Loss>,
    /// PostgreSQL mode: lock errors while the server was restarting or the
    /// process's session had just been terminated.
    pub outage_errors: u64,
    pub token_regressions: u64,
    pub sysctl_flips: u64,
    pub sysctl_levels: [u64; 3],
    pub bodies: Vec<Body>,
    /// Per way (`Way as usize`).
    pub completed: Vec<u64>,
    pub killed: Vec<u64>,
    pub exits: [u64; 5],
    pub overlaps: Vec<Overlap>,
    pub occupancy: (u64, u64),
    pub counter: Counter,
    pub shared_changed: (u64, u64),
    pub longest_wait: (u64, Option<Way>),
    pub lost_warnings: u64,
    /// File mode: holds whose file was removed under them and that were
    /// let go normally (not killed): each must have warned.
    pub warnings_due: u64,
    pub flock: Vec<[u64; OUTCOMES]>,
    pub flock_entered: Vec<u64>,
    /// Every failure: when (ns since start), and what.
    pub failures: Vec<(u64, String)>,
}

#[derive(Default, Debug)]
pub struct Counter {
    pub value: u64,
    pub completed_writes: u64,
    pub killed_landed: u64,
    pub lost: i64,
    pub lost_explained: u64,
}

pub fn analyze(records: &[Record], counter: (u64, u64), flock: &str, log: &str) -> Analysis {
    let mut an = Analysis {
        completed: vec![0; WAYS],
        killed: vec![0; WAYS],
        flock: vec![[0; OUTCOMES]; WAYS],
        flock_entered: vec![0; WAYS],
        ..Analysis::default()
    };
    let mut procs: HashMap<(u8, u32), Proc> = HashMap::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    let mut exits: Vec<&Record> = Vec::new();
    // Every read of the counter: (writer read, value read).
    let mut reads: Vec<(u64, u64)> = Vec::new();
    let mut oddities: Vec<(u64, String)> = Vec::new();
    // Lock errors in PostgreSQL mode, judged once every outage is known.
    let mut pending: Vec<&Record> = Vec::new();
    for r in records {
        let proc = || (r.slot, r.inc);
        match r.kind() {
            Some(Kind::Start) => (an.start, an.seed, an.database) = (r.t, r.a, r.c == 1),
            Some(Kind::End) => an.end = r.t,
            // Kills at the end are not chaos.
            Some(Kind::Kill) if an.end != 0 => {
                procs.entry(proc()).or_default().kill.get_or_insert(r.t);
            }
            Some(Kind::Spawn) => {
                let role = match (r.has(flag::LONG_LIVED), r.has(flag::FLOCK)) {
                    (true, _) => 0,
                    (_, false) => 1,
                    (_, true) => 2,
                };
                an.spawned[role] += 1;
                an.other_user += u64::from(r.has(flag::OTHER_USER));
                an.umask_077 += u64::from(r.has(flag::UMASK_077));
                procs.entry(proc()).or_default().flags = r.flags;
            }
            Some(Kind::Kill) => {
                an.kills += 1;
                an.holder_kills += u64::from(r.has(flag::HOLDER));
                let p = procs.entry(proc()).or_default();
                p.kill.get_or_insert(r.t);
                if let Some(open) = p.stop_open.take() {
                    p.stops.push((open, r.t));
                }
            }
            Some(Kind::Stop) => {
                an.stops += 1;
                procs.entry(proc()).or_default().stop_open = Some(r.t);
            }
            Some(Kind::Cont) => {
                let p = procs.entry(proc()).or_default();
                if let Some(open) = p.stop_open.take() {
                    p.stops.push((open, r.t));
                    an.longest_stop = an.longest_stop.max(r.t - open);
                }
            }
            Some(Kind::Reap) => {
                let p = procs.entry(proc()).or_default();
                p.reap = Some(r.t);
                if let Some(open) = p.stop_open.take() {
                    p.stops.push((open, r.t));
                }
            }
            Some(Kind::Delete) => an.losses.push(Loss {
                kind: LossKind::Delete(r.a),
                before: r.b,
                after: r.t,
            }),
            Some(Kind::Replace) => an.losses.push(Loss {
                kind: LossKind::Replace(r.a),
                before: r.b,
                after: r.t,
            }),
            Some(Kind::Terminate) => an.losses.push(Loss {
                kind: LossKind::Terminate(r.slot, r.inc, r.has(flag::HOLDER)),
                before: r.b,
                after: r.t,
            }),
            Some(Kind::Restart) => an.losses.push(Loss {
                kind: LossKind::Restart,
                before: r.b,
                after: r.t,
            }),
            Some(Kind::Sysctl) => {
                an.sysctl_flips += 1;
                if let Some(level) = an.sysctl_levels.get_mut(r.a as usize) {
                    *level += 1;
                }
            }
            Some(Kind::Enter) => {
                let Some(way) = Way::from_u8(r.way) else {
                    oddities.push((r.t, format!("an entry of unknown way {}", r.way)));
                    continue;
                };
                by_id.insert(r.id, an.bodies.len());
                an.bodies.push(Body {
                    id: r.id,
                    slot: r.slot,
                    inc: r.inc,
                    lane: r.lane,
                    way,
                    exclusive: r.has(flag::EXCLUSIVE),
                    outer: r.has(flag::NESTED).then_some(r.b),
                    t0: r.t,
                    end: 0,
                    exit: None,
                    killed: false,
                    vanished: false,
                    file: if an.database { 0 } else { r.a },
                    token: if an.database { r.a } else { 0 },
                    wait: if r.has(flag::NESTED) { 0 } else { r.b },
                    bits: (r.c, r.d),
                    no_flock: r.has(flag::NO_FLOCK),
                    wrong_mode: r.has(flag::WRONG_MODE),
                    rmw: (0, 0, 0),
                    seen: (0, 0),
                    hold_start: r.t,
                });
            }
            Some(Kind::Exit) => exits.push(r),
            Some(Kind::Read) => reads.push((r.b, r.a)),
            Some(Kind::Error) if an.database && Oops::from_u64(r.a) == Some(Oops::LockError) => {
                pending.push(r);
            }
            Some(Kind::Error) => {
                let what = match Oops::from_u64(r.a) {
                    Some(Oops::UnexpectedPanic) => "an unexpected panic",
                    _ => "a lock error",
                };
                let way = Way::from_u8(r.way).map_or("?", Way::name);
                oddities.push((
                    r.t,
                    format!(
                        "{what} in slot {} incarnation {} lane {} ({way}); see SOAK-ERROR in the log",
                        r.slot, r.inc, r.lane
                    ),
                ));
            }
            Some(Kind::Leak) => oddities.push((
                r.t,
                format!(
                    "slot {} incarnation {} held the lock file's flock ({}) for a second with no \
                     caller holding the lock: a lock never released",
                    r.slot,
                    r.inc,
                    fileid::show(r.a)
                ),
            )),
            Some(Kind::Failure) => {
                let what = match Oops::from_u64(r.a) {
                    Some(Oops::Hang) => "no body completed for 10 s with no process stopped (hang)",
                    Some(Oops::Stuck) => "a process did not finish within 20 s of being asked to",
                    Some(Oops::WorkerDied) => "a participant died unasked",
                    Some(Oops::BadFileMode) => "the lock file had a mode other than 0644",
                    Some(Oops::Growth) => "a long-lived worker's descriptors or threads grew",
                    Some(Oops::NoSysctlRestore) => "fs.protected_regular could not be restored",
                    _ => "a failure found by the parent",
                };
                oddities.push((
                    r.t,
                    format!("{what} (slot {} incarnation {})", r.slot, r.inc),
                ));
            }
            None => oddities.push((r.t, format!("a record of unknown kind {}", r.kind))),
        }
    }
    if an.end == 0 {
        an.end = records.iter().map(|r| r.t).max().unwrap_or(0);
    }
    for r in pending {
        if during_outage(&an.losses, r) {
            an.outage_errors += 1;
        } else {
            let way = Way::from_u8(r.way).map_or("?", Way::name);
            oddities.push((
                r.t,
                format!(
                    "a lock error in slot {} incarnation {} lane {} ({way}) with the server up; \
                     see SOAK-ERROR in the log",
                    r.slot, r.inc, r.lane
                ),
            ));
        }
    }
    for r in exits {
        let Some(&i) = by_id.get(&r.id) else {
            oddities.push((
                r.t,
                format!("an exit of body {:#x} that never entered", r.id),
            ));
            continue;
        };
        let body = &mut an.bodies[i];
        body.end = r.t;
        body.exit = Exit::ALL.into_iter().find(|e| *e as u8 == r.exit);
        if body.exclusive {
            body.rmw = (r.a, r.b, r.c);
        } else {
            body.seen = (r.c, r.d);
        }
    }
    finish_bodies(&mut an, &procs);
    hold_starts(&mut an.bodies, an.database);
    an.overlaps = overlaps(&an.bodies, &an.losses, &procs, an.database);
    an.token_regressions = tokens(&an.bodies, &mut oddities);
    let failures = &mut an.failures;
    failures.extend(oddities);
    for o in &an.overlaps {
        if let Err(why) = o.verdict {
            let (a, b) = (&an.bodies[o.a], &an.bodies[o.b]);
            failures.push((
                b.t0,
                format!("overlap ({why}): {} and {}", describe(a), describe(b)),
            ));
        }
    }
    for b in &an.bodies {
        if b.no_flock {
            failures.push((
                b.t0,
                format!("a body ran with no flock held: {}", describe(b)),
            ));
        }
        if b.wrong_mode {
            failures.push((
                b.t0,
                format!("an exclusive body held a shared flock: {}", describe(b)),
            ));
        }
        if b.vanished {
            failures.push((
                b.t0,
                format!("a body never ended, unkilled: {}", describe(b)),
            ));
        }
    }
    an.occupancy = occupancy(&an.bodies, &an.overlaps, failures);
    an.counter = counter_check(&an.bodies, &an.overlaps, &reads, counter, an.end, failures);
    an.shared_changed = shared_check(&an.bodies, &an.overlaps, failures);
    for b in &an.bodies {
        let way = b.way as usize;
        match (b.exit, b.killed) {
            (Some(exit), _) => {
                an.completed[way] += 1;
                an.exits[exit as usize - 1] += 1;
            }
            (None, true) => an.killed[way] += 1,
            _ => {}
        }
        if b.outer.is_none() && b.wait > an.longest_wait.0 {
            an.longest_wait = (b.wait, Some(b.way));
        }
    }
    an.lost_warnings = log
        .lines()
        .filter(|line| line.contains("exclusion may have been broken"))
        .count() as u64;
    if !an.database {
        an.warnings_due = warnings_due(&an.bodies, &an.losses, &procs);
        if an.lost_warnings < an.warnings_due {
            an.failures.push((
                an.end,
                format!(
                    "{} holds of a file removed under them were let go, and only {} warnings \
                     that exclusion may have been broken were printed",
                    an.warnings_due, an.lost_warnings
                ),
            ));
        }
    }
    flock_outcomes(&mut an, flock);
    for (t, _) in &mut an.failures {
        *t = t.saturating_sub(an.start);
    }
    an.failures.sort_by_key(|(t, _)| *t);
    an
}

/// A body without an exit ended when its process was killed; one whose
/// process was not killed vanished (a failure).
fn finish_bodies(an: &mut Analysis, procs: &HashMap<(u8, u32), Proc>) {
    for b in an.bodies.iter_mut().filter(|b| b.exit.is_none()) {
        let proc = procs.get(&(b.slot, b.inc));
        match proc.and_then(|p| p.kill) {
            Some(kill) => {
                b.killed = true;
                b.end = kill.max(b.t0);
            }
            None => {
                b.vanished = true;
                b.end = proc.and_then(|p| p.reap).unwrap_or(an.end).max(b.t0);
            }
        }
    }
}

/// A lock error in PostgreSQL mode is expected while the server restarts
/// (and until the workers have reconnected) and after the process's own
/// session was terminated.
fn during_outage(losses: &[Loss], error: &Record) -> bool {
    const AFTER: u64 = 20_000_000_000;
    losses.iter().any(|loss| match loss.kind {
        LossKind::Restart => {
            loss.before.saturating_sub(1_000_000_000) <= error.t && error.t <= loss.after + AFTER
        }
        LossKind::Terminate(slot, inc, _) => {
            (slot, inc) == (error.slot, error.inc)
                && loss.before <= error.t
                && error.t <= loss.after + AFTER
        }
        _ => false,
    })
}

/// PostgreSQL mode: a hold that began after another ended must have a
/// larger fencing token. Returns how many did not.
fn tokens(bodies: &[Body], failures: &mut Vec<(u64, String)>) -> u64 {
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
fn warnings_due(bodies: &[Body], losses: &[Loss], procs: &HashMap<(u8, u32), Proc>) -> u64 {
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

/// Bodies of one process on one file (or one server) that overlap share
/// one hold.
fn hold_starts(bodies: &mut [Body], database: bool) {
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
fn overlaps(
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

fn verdict(
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
fn explains(
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
fn occupancy(
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

/// The outermost body of `i`.
fn outermost(bodies: &[Body], by_id: &HashMap<u64, usize>, i: usize) -> usize {
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
fn counter_check(
    bodies: &[Body],
    overlaps: &[Overlap],
    reads: &[(u64, u64)],
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
    let mut read_from: HashMap<u64, u64> = reads.iter().copied().collect();
    read_from.insert(last_writer, value);
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
    for (v, writers) in written.iter().filter(|(_, w)| w.len() > 1) {
        let outers: Vec<usize> = writers
            .iter()
            .map(|&i| outermost(bodies, &by_id, i))
            .collect();
        let all_explained = outers.iter().enumerate().all(|(n, &x)| {
            outers[n + 1..]
                .iter()
                .all(|&y| x == y || ok_pairs.contains(&(x, y)))
        });
        if all_explained {
            counter.lost_explained += writers.len() as u64 - 1;
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
fn shared_check(
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

fn flock_outcomes(an: &mut Analysis, text: &str) {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(letter), Some(status)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(way) = letter.chars().next().and_then(Way::from_flock_letter) else {
            continue;
        };
        let outcome = match status {
            "0" => {
                an.flock_entered[way as usize] += 1;
                continue;
            }
            "75" if way.patience() == Patience::Once => Outcome::Busy,
            "75" => Outcome::TimedOut,
            // The shell could not open the file (removed by the chaos since
            // `lock-path` made it), or the path named another file once
            // locked: the script let go.
            "2" | "76" => Outcome::FileGone,
            _ => {
                an.failures.push((
                    an.end,
                    format!(
                        "a flock(1) attempt ({}) ended with status {status}",
                        way.name()
                    ),
                ));
                Outcome::Error
            }
        };
        an.flock[way as usize][outcome as usize] += 1;
    }
}

pub fn describe(b: &Body) -> String {
    let kind = if b.exclusive { "exclusive" } else { "shared" };
    let end = match (b.exit, b.killed) {
        (Some(exit), _) => exit.name(),
        (None, true) => "killed",
        (None, false) => "vanished",
    };
    format!(
        "[slot {} inc {} lane {}, {kind}, {}, {}, {:.6}..{:.6} s, {end}]",
        b.slot,
        b.inc,
        b.lane,
        b.way.name(),
        fileid::show(b.file),
        b.t0 as f64 / 1e9,
        b.end as f64 / 1e9
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Record;

    fn rec(kind: Kind, t: u64) -> Record {
        Record {
            kind: kind as u8,
            t,
            ..Record::default()
        }
    }

    fn enter(id: u64, slot: u8, t: u64, inode: u64, exclusive: bool) -> Record {
        let mut r = rec(Kind::Enter, t);
        (r.id, r.slot, r.inc, r.a) = (id, slot, 1, inode);
        r.way = if exclusive { Way::Try } else { Way::SharedTry } as u8;
        r.flags = if exclusive { flag::EXCLUSIVE } else { 0 };
        r
    }

    fn exit(id: u64, slot: u8, t: u64, rmw: (u64, u64, u64)) -> Record {
        let mut r = rec(Kind::Exit, t);
        (r.id, r.slot, r.inc, r.exit) = (id, slot, 1, Exit::Normal as u8);
        (r.a, r.b, r.c, r.flags) = (rmw.0, rmw.1, rmw.2, flag::EXCLUSIVE);
        r
    }

    fn removal(inode: u64, t: u64) -> Record {
        let mut r = rec(Kind::Delete, t + 10);
        (r.a, r.b) = (inode, t);
        r
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn sequential_bodies_pass() {
        let records = [
            rec(Kind::Start, 0),
            enter(1, 0, 10 * S, 7, true),
            exit(1, 0, 11 * S, (0, 0, 1)),
            enter(2, 1, 12 * S, 7, true),
            exit(2, 1, 13 * S, (1, 1, 2)),
        ];
        let an = analyze(&records, (2, 2), "", "");
        assert!(an.failures.is_empty(), "{:?}", an.failures);
        assert_eq!(an.counter.completed_writes, 2);
    }

    #[test]
    fn an_overlap_after_a_removal_while_held_is_explained() {
        let records = [
            rec(Kind::Start, 0),
            enter(1, 0, 10 * S, 7, true),
            removal(7, 11 * S),
            enter(2, 1, 12 * S, 8, true),
            exit(2, 1, 13 * S, (0, 0, 1)),
            exit(1, 0, 14 * S, (0, 0, 1)),
        ];
        let warned = "x: WARNING: exclusion may have been broken: ...\n";
        let an = analyze(&records, (1, 1), "", warned);
        assert!(an.failures.is_empty(), "{:?}", an.failures);
        assert_eq!(an.counter.lost, 1);
        assert_eq!(an.counter.lost_explained, 1);
        assert!(an.overlaps[0].verdict.is_ok());
        let silent = analyze(&records, (1, 1), "", "");
        assert_eq!(silent.warnings_due, 1);
        assert_eq!(silent.failures.len(), 1, "the holder let go without a word");
    }

    #[test]
    fn an_overlap_after_a_removal_before_the_hold_is_a_failure() {
        let records = [
            rec(Kind::Start, 0),
            removal(7, 5 * S),
            enter(1, 0, 10 * S, 7, true),
            enter(2, 1, 12 * S, 8, true),
            exit(2, 1, 13 * S, (0, 0, 1)),
            exit(1, 0, 14 * S, (1, 2, 2)),
        ];
        let an = analyze(&records, (2, 1), "", "");
        assert_eq!(an.overlaps.len(), 1);
        assert!(an.overlaps[0].verdict.is_err());
        assert!(!an.failures.is_empty());
    }

    #[test]
    fn one_file_two_holders_is_a_failure() {
        let records = [
            rec(Kind::Start, 0),
            enter(1, 0, 10 * S, 7, true),
            removal(7, 11 * S),
            enter(2, 1, 12 * S, 7, false),
            exit(1, 0, 14 * S, (0, 0, 1)),
        ];
        let an = analyze(&records, (1, 1), "", "");
        assert_eq!(
            an.overlaps[0].verdict,
            Err("both held flocks on the same file")
        );
    }
}
