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

mod checks;
mod overlap;

use crate::fileid;
use crate::journal::{Exit, Kind, Oops, Record, flag};
use crate::way::{OUTCOMES, Outcome, Patience, WAYS, Way};
use checks::{counter_check, shared_check, tokens, warnings_due};
pub use overlap::SLACK;
use overlap::{hold_starts, occupancy, overlaps};
use std::collections::HashMap;

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
    // Every read of the counter: (reader, writer read, value read).
    let mut reads: Vec<(u64, u64, u64)> = Vec::new();
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
            Some(Kind::Read) => reads.push((r.id, r.b, r.a)),
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

    fn read(id: u64, slot: u8, t: u64, value: u64, writer: u64) -> Record {
        let mut r = rec(Kind::Read, t);
        (r.id, r.slot, r.inc, r.a, r.b) = (id, slot, 1, value, writer);
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

    /// A holder whose file was removed writes late (it was stopped between
    /// its read and its write): the counter goes back, and a later writer
    /// writes a value written before. Both lost updates are explained.
    #[test]
    fn a_late_write_of_a_lost_holder_is_explained() {
        let records = [
            rec(Kind::Start, 0),
            enter(3, 2, 10 * S, 7, true),
            read(3, 2, 10 * S + 1, 0, 0),
            removal(7, 11 * S),
            enter(1, 0, 12 * S, 8, true),
            read(1, 0, 12 * S + 1, 0, 0),
            exit(1, 0, 13 * S, (0, 0, 1)),
            enter(2, 0, 13 * S + 2, 8, true),
            read(2, 0, 13 * S + 3, 1, 1),
            exit(2, 0, 13 * S + 4, (1, 1, 2)),
            exit(3, 2, 15 * S, (0, 0, 1)),
            enter(4, 1, 16 * S, 8, true),
            read(4, 1, 16 * S + 1, 1, 3),
            exit(4, 1, 17 * S, (1, 3, 2)),
        ];
        let warned = "x: WARNING: exclusion may have been broken: ...\n";
        let an = analyze(&records, (2, 4), "", warned);
        assert!(an.failures.is_empty(), "{:?}", an.failures);
        assert_eq!((an.counter.lost, an.counter.lost_explained), (2, 2));
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
