//! The summary printed at the end of a run.

use crate::analyze::Analysis;
use crate::way::{Outcome, WAYS, Way};
use std::fmt::Write as _;

/// What only the parent saw.
#[derive(Default, Debug)]
pub struct ParentStats {
    pub secs: f64,
    pub workers: usize,
    pub flocks: usize,
    pub other_user: Option<String>,
    pub sysctl_windows: u64,
    pub sysctl_skipped: u64,
    pub sysctl_note: Option<String>,
    pub long_lived: Vec<Sample>,
    pub interrupted: bool,
    pub dir: String,
}

/// A long-lived worker's descriptors and threads, first and last seen.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub slot: usize,
    pub who: String,
    pub first: Option<(usize, usize)>,
    pub last: Option<(usize, usize)>,
    pub max: (usize, usize),
}

pub fn render(
    an: &Analysis,
    parent: &ParentStats,
    outcomes: &[[u64; crate::way::OUTCOMES]; WAYS],
) -> String {
    let mut o = String::new();
    let s = |ns: u64| ns as f64 / 1e9;
    let total: u64 = an.completed.iter().sum();
    let killed: u64 = an.killed.iter().sum();
    let spawned: u64 = an.spawned.iter().sum();
    let _ = writeln!(
        o,
        "\n==== lockattr-soak summary (seed {}, {:.0} s, {} workers and {} flock(1) scripts at a time, {}) ====",
        an.seed, parent.secs, parent.workers, parent.flocks, parent.dir
    );
    let _ = writeln!(
        o,
        "processes started   {spawned} (long-lived {}, workers {}, flock(1) scripts {}; as {} {}; umask 077 {})",
        an.spawned[0],
        an.spawned[1],
        an.spawned[2],
        parent.other_user.as_deref().unwrap_or("a second user"),
        an.other_user,
        an.umask_077
    );
    let exits: Vec<String> = crate::journal::Exit::ALL
        .iter()
        .map(|e| format!("{} {}", e.name(), an.exits[*e as usize - 1]))
        .collect();
    let _ = writeln!(
        o,
        "bodies completed    {total} (left by {}); killed inside a body {killed}",
        exits.join(", ")
    );
    let mut header = format!("  {:<40} {:>9} {:>6}", "way", "completed", "killed");
    for (outcome, width) in Outcome::ALL.iter().zip([8, 9, 9, 7, 9, 6]) {
        let _ = write!(header, " {:>width$}", outcome.name());
    }
    let _ = writeln!(o, "{header}");
    for way in Way::ALL {
        let w = way as usize;
        let count =
            |outcome: Outcome| outcomes[w][outcome as usize] + an.flock[w][outcome as usize];
        let _ = writeln!(
            o,
            "  {:<40} {:>9} {:>6} {:>8} {:>9} {:>9} {:>7} {:>9} {:>6}",
            way.name(),
            an.completed[w],
            an.killed[w],
            count(Outcome::Busy),
            count(Outcome::TimedOut),
            count(Outcome::Cancelled),
            count(Outcome::Refused),
            count(Outcome::FileGone),
            count(Outcome::Error)
        );
    }
    use crate::analyze::LossKind;
    let count = |f: fn(&LossKind) -> bool| an.losses.iter().filter(|l| f(&l.kind)).count();
    let deletions = count(|k| matches!(k, LossKind::Delete(_)));
    let replacements = count(|k| matches!(k, LossKind::Replace(_)));
    let terminations = count(|k| matches!(k, LossKind::Terminate(..)));
    let of_soak = count(|k| matches!(k, LossKind::Terminate(_, _, true)));
    let restarts = count(|k| matches!(k, LossKind::Restart));
    let _ = writeln!(
        o,
        "chaos               SIGKILLs {} ({} of a holder), SIGSTOPs {} (longest {:.2} s)",
        an.kills,
        an.holder_kills,
        an.stops,
        s(an.longest_stop)
    );
    if an.database {
        let _ = writeln!(
            o,
            "PostgreSQL          backends terminated {terminations} ({of_soak} of the soak's lock), server restarts {restarts}, lock errors during these outages {}, fencing token regressions {}",
            an.outage_errors, an.token_regressions
        );
    } else {
        let _ = writeln!(
            o,
            "lock file           deleted {deletions}, replaced {replacements}"
        );
        let _ = writeln!(
            o,
            "fs.protected_regular flips {} (to 0: {}, 1: {}, 2: {}) in {} windows, {} windows skipped (another run held the sysctl){}",
            an.sysctl_flips,
            an.sysctl_levels[0],
            an.sysctl_levels[1],
            an.sysctl_levels[2],
            parent.sysctl_windows,
            parent.sysctl_skipped,
            parent
                .sysctl_note
                .as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        );
    }
    let explained = an.overlaps.iter().filter(|o| o.verdict.is_ok()).count();
    let gaps: Vec<u64> = an
        .overlaps
        .iter()
        .filter_map(|o| o.verdict.ok().map(|(_, gap)| gap))
        .filter(|&gap| gap > 0)
        .collect();
    let slack = match gaps.iter().max() {
        None => String::new(),
        Some(widest) => format!(
            "; {} of them by a loss up to {:.1} ms before the hold's recorded start, within the {} ms allowed plus time stopped",
            gaps.len(),
            *widest as f64 / 1e6,
            crate::analyze::SLACK / 1_000_000
        ),
    };
    let _ = writeln!(
        o,
        "overlaps            explained {explained} (by a loss of the lock while held{slack}), UNEXPLAINED {}",
        an.overlaps.len() - explained
    );
    let _ = writeln!(
        o,
        "occupancy word      saw another holder: explained {}, UNEXPLAINED {}",
        an.occupancy.0, an.occupancy.1
    );
    let c = &an.counter;
    let _ = writeln!(
        o,
        "counter             {} = {} completed writes + {} writes of killed bodies - {} lost (explained {}, UNEXPLAINED {})",
        c.value,
        c.completed_writes,
        c.killed_landed,
        c.lost,
        c.lost_explained,
        (c.lost.max(0) as u64).saturating_sub(c.lost_explained)
    );
    let _ = writeln!(
        o,
        "shared bodies       saw the counter change: explained {}, UNEXPLAINED {}",
        an.shared_changed.0, an.shared_changed.1
    );
    let _ = writeln!(
        o,
        "holders warned      {} \"exclusion may have been broken\" lines for {} losses ({} holds let go of a removed file, each must warn)",
        an.lost_warnings,
        an.losses.len(),
        an.warnings_due
    );
    let _ = writeln!(
        o,
        "longest wait        {:.3} s ({})",
        s(an.longest_wait.0),
        an.longest_wait.1.map_or("-", Way::name)
    );
    for sample in &parent.long_lived {
        let show = |v: Option<(usize, usize)>| {
            v.map_or("?".to_owned(), |(f, t)| format!("{f} fds, {t} threads"))
        };
        let _ = writeln!(
            o,
            "long-lived worker   slot {} ({}): {} at start, {} at end, at most {} fds, {} threads",
            sample.slot,
            sample.who,
            show(sample.first),
            show(sample.last),
            sample.max.0,
            sample.max.1
        );
    }
    if parent.interrupted {
        let _ = writeln!(o, "interrupted         by a signal: the run was cut short");
    }
    if an.failures.is_empty() {
        let _ = writeln!(o, "RESULT: PASS");
    } else {
        let _ = writeln!(
            o,
            "failures            {} (first at {:.3} s into the run):",
            an.failures.len(),
            s(an.failures[0].0)
        );
        for (t, what) in an.failures.iter().take(20) {
            let _ = writeln!(o, "  {:>9.3} s  {what}", s(*t));
        }
        if an.failures.len() > 20 {
            let _ = writeln!(o, "  ... and {} more", an.failures.len() - 20);
        }
        let _ = writeln!(o, "RESULT: FAIL");
    }
    o
}
