//! `lockattr-soak`: a chaos soak of lockattr. See `HELP`, and the README's
//! "Reliability" section.

mod analyze;
mod body;
mod chaos;
mod fileid;
mod flock;
mod held;
mod journal;
mod pgchaos;
mod plan;
mod procfs;
mod report;
mod rng;
mod run;
mod shm;
mod signals;
mod slots;
mod sysctl;
mod tasks;
mod users;
mod way;
mod ways;
mod worker;

use std::path::PathBuf;

const HELP: &str = "\
lockattr-soak: a chaos soak of lockattr's one promise, never two holders at once

USAGE:
    cargo run --release -p lockattr-soak -- [OPTIONS]
    lockattr-soak replay RUN_DIR

Many worker processes (4 threads and 2 tokio tasks each; some as a second
user, lockattr-t1, through runuser; some under umask 077) and flock(1)
scripts take one lock, `soak` in one directory, every way lockattr offers:
#[exclusive] try-once, wait, wait = \"DUR\", shared, nested re-entry,
Lock::acquire guards, async fns (also cancelled by tokio::time::timeout),
and `flock` on a read-only descriptor. Meanwhile the parent SIGKILLs
holders and waiters, SIGSTOPs and SIGCONTs them, deletes and replaces the
lock file, and flips fs.protected_regular between 0, 1 and 2 (under the
host-wide lock on the sysctl file, always restored).

Each body checks, without trusting lockattr, that it is alone: an occupancy
word in shared memory, the flock the kernel says its process holds, a
journal of entry and exit times replayed afterwards, and a read-modify-write
counter. Every overlap must be explained by a removal of the lock file
while it was held (which lockattr documents it cannot prevent), or the run
fails. A run fails too on a hang (no body for 10 s with no process
stopped), a lock error, a lock left held, a lock file not 0644, or a
long-lived worker whose descriptors or threads grow. Exit status 0: pass.

OPTIONS:
    --secs N        how long to run (default 60)
    --seed N        the random seed (default: a fresh one, printed)
    --workers N     worker processes at a time, the first two long-lived
                    (default 8)
    --flock N       flock(1) scripts at a time (default 2); workers and
                    scripts together at most 10
    --tmp DIR       where the run directory goes (default $TMPDIR or /tmp)
    --keep          keep the run directory after a pass (always kept after
                    a failure; `lockattr-soak replay DIR` replays it)
    --no-users      everyone runs as the current user
    --no-sysctl     leave fs.protected_regular alone
    --naive-flock   flock(1) scripts take the lock exactly as the README's
                    recipe says, without checking afterwards that the path
                    still names the file they locked (lockattr does): shows
                    the overlaps that check prevents
    --postgres URL  lock on this PostgreSQL server instead (LOCKATTR_URL;
                    build with --features postgres); `auto` starts a
                    throw-away one (tests/pg/cluster) that the chaos loop
                    also restarts. No lock files then: no flock(1) scripts,
                    no removals; backends are terminated instead
    -h, --help      this text

Root is needed for the second user and the sysctl; without root the run says
so and goes on without them.
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("__worker") => worker(&args[1..]),
        Some("flock-body") => flock_body(&args[1..]),
        Some("lock-path") => match args.get(1) {
            Some(dir) => flock::lock_path_main(std::path::Path::new(dir)),
            None => usage("lock-path DIR"),
        },
        Some("replay") => match args.get(1) {
            Some(dir) => replay(
                std::path::Path::new(dir),
                args.get(2).is_some_and(|a| a == "--verbose"),
            ),
            None => usage("replay RUN_DIR [--verbose]"),
        },
        _ => match parse(&args) {
            Ok(Some(config)) => run::run(&config),
            Ok(None) => {
                print!("{HELP}");
                0
            }
            Err(err) => {
                eprintln!("lockattr-soak: {err}\n\n{HELP}");
                2
            }
        },
    };
    std::process::exit(code);
}

fn usage(what: &str) -> i32 {
    eprintln!("usage: lockattr-soak {what}");
    2
}

/// The options of a run; `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<run::Config>, String> {
    let mut config = run::Config {
        secs: 60,
        seed: rng::fresh_seed(),
        workers: 8,
        flocks: 2,
        tmp: std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from),
        keep: false,
        users: true,
        sysctl: true,
        naive_flock: false,
        postgres: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<String, String> {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, text: String| -> Result<u64, String> {
            text.parse()
                .map_err(|_| format!("{name} takes a number, not {text:?}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--secs" => config.secs = number("--secs", value("--secs")?)?,
            "--seed" => config.seed = number("--seed", value("--seed")?)?,
            "--workers" => config.workers = number("--workers", value("--workers")?)? as usize,
            "--flock" => config.flocks = number("--flock", value("--flock")?)? as usize,
            "--tmp" => config.tmp = PathBuf::from(value("--tmp")?),
            "--keep" => config.keep = true,
            "--no-users" => config.users = false,
            "--no-sysctl" => config.sysctl = false,
            "--naive-flock" => config.naive_flock = true,
            "--postgres" => config.postgres = Some(value("--postgres")?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if config.workers + config.flocks > shm::SLOTS || config.workers < 2 {
        return Err(format!(
            "--workers (at least 2) and --flock together at most {}",
            shm::SLOTS
        ));
    }
    Ok(Some(config))
}

/// `__worker RUN LOCK_DIR SLOT INC SEED UMASK UNTIL URL`, started by the
/// parent (URL `-`: lock files).
fn worker(args: &[String]) -> i32 {
    let [run, lock_dir, slot, inc, seed, mask, until, url] = args else {
        return usage("__worker RUN LOCK_DIR SLOT INC SEED UMASK UNTIL URL");
    };
    let (Ok(slot), Ok(inc), Ok(seed), Ok(until)) =
        (slot.parse(), inc.parse(), seed.parse(), until.parse())
    else {
        return usage("__worker RUN LOCK_DIR SLOT INC SEED UMASK UNTIL URL");
    };
    worker::main(worker::Args {
        run: PathBuf::from(run),
        lock_dir: PathBuf::from(lock_dir),
        slot,
        inc,
        seed,
        umask_077: mask == "077",
        until,
        url: (url != "-").then(|| url.clone()),
    })
}

/// `flock-body RUN SLOT INC ITER LETTER SEED`, run by a flock(1) script.
fn flock_body(args: &[String]) -> i32 {
    let [run, slot, inc, iter, letter, seed] = args else {
        return usage("flock-body RUN SLOT INC ITER LETTER SEED");
    };
    let parsed = (
        slot.parse(),
        inc.parse(),
        iter.parse(),
        letter.chars().next(),
        seed.parse(),
    );
    let (Ok(slot), Ok(inc), Ok(iter), Some(letter), Ok(seed)) = parsed else {
        return usage("flock-body RUN SLOT INC ITER LETTER SEED");
    };
    flock::body_main(std::path::Path::new(run), slot, inc, iter, letter, seed)
}

/// Replays a kept run directory's journal; `verbose` lists every overlap.
fn replay(dir: &std::path::Path, verbose: bool) -> i32 {
    let records = match journal::read(&dir.join("journal")) {
        Ok(records) => records,
        Err(err) => {
            eprintln!(
                "lockattr-soak: cannot read {}: {err}",
                dir.join("journal").display()
            );
            return 2;
        }
    };
    let counter = std::fs::File::open(dir.join("counter"))
        .map(|file| body::read_counter(&std::os::fd::OwnedFd::from(file)))
        .unwrap_or((0, 0));
    let flock = std::fs::read_to_string(dir.join("flock-outcomes")).unwrap_or_default();
    let log = std::fs::read_to_string(dir.join("workers.log")).unwrap_or_default();
    let analysis = analyze::analyze(&records, counter, &flock, &log);
    let stats = report::ParentStats {
        dir: dir.display().to_string(),
        ..report::ParentStats::default()
    };
    let outcomes = [[0; way::OUTCOMES]; way::WAYS];
    print!("{}", report::render(&analysis, &stats, &outcomes));
    if verbose {
        for overlap in &analysis.overlaps {
            let (a, b) = (&analysis.bodies[overlap.a], &analysis.bodies[overlap.b]);
            let verdict = match overlap.verdict {
                Ok((loss, gap)) => {
                    let loss = &analysis.losses[loss];
                    format!(
                        "explained: {} at {:.6} s, {:.3} ms before the hold began",
                        loss.describe(),
                        loss.after as f64 / 1e9,
                        gap as f64 / 1e6
                    )
                }
                Err(why) => format!("UNEXPLAINED: {why}"),
            };
            println!(
                "{verdict}\n    {}\n    {}",
                analyze::describe(a),
                analyze::describe(b)
            );
        }
    }
    if analysis.failures.is_empty() { 0 } else { 1 }
}
