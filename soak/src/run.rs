//! The parent: sets up a run directory, keeps the slots filled with
//! participants, runs the chaos loop and the watchdogs, ends the run, and
//! has the journal replayed.

use crate::journal::{self, Journal, Kind, Oops, Record, now};
use crate::pgchaos::Cluster;
use crate::report::{ParentStats, Sample};
use crate::rng::Rng;
use crate::shm::{self, Shared};
use crate::slots::{Role, Setup, Slot};
use crate::sysctl::Window;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

pub struct Config {
    pub secs: u64,
    pub seed: u64,
    pub workers: usize,
    pub flocks: usize,
    pub tmp: PathBuf,
    pub keep: bool,
    pub users: bool,
    pub sysctl: bool,
    pub naive_flock: bool,
    /// PostgreSQL mode: a server's URL, or `auto` for a throw-away server
    /// of our own (which the chaos loop also restarts).
    pub postgres: Option<String>,
}

/// No body completed for this long while no process was stopped: a hang.
const HANG: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(20);
const CHAOS_EVERY: Duration = Duration::from_millis(100);
/// How much a long-lived worker's descriptors or threads may grow.
const GROWTH: usize = 8;

/// The run's directory: `$TMPDIR/lockattr-soak.PID`, with an flock held on
/// it for as long as the run lives (so a clean-up sees it is in use).
struct RunDir {
    path: PathBuf,
    _alive: OwnedFd,
}

impl RunDir {
    fn create(tmp: &Path) -> std::io::Result<RunDir> {
        use std::os::unix::fs::PermissionsExt;
        let path = tmp.join(format!("lockattr-soak.{}", std::process::id()));
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        let alive = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::flock(&alive, FlockOperation::LockExclusive)?;
        Ok(RunDir {
            path,
            _alive: alive,
        })
    }
}

fn file_0666(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

pub fn run(config: &Config) -> i32 {
    crate::signals::install();
    let dir = match RunDir::create(&config.tmp) {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!(
                "lockattr-soak: cannot make the run directory in {}: {err}",
                config.tmp.display()
            );
            return 2;
        }
    };
    let run = dir.path.clone();
    let lock_dir = run.join("locks");
    let setup_files = || -> std::io::Result<(PathBuf, &'static Shared, Journal, std::fs::File)> {
        use std::os::unix::fs::PermissionsExt;
        // Sticky and world-writable, owned by root, like /tmp: where
        // fs.protected_regular applies.
        std::fs::create_dir(&lock_dir)?;
        std::fs::set_permissions(&lock_dir, std::fs::Permissions::from_mode(0o1777))?;
        let bin = crate::slots::install_binary(&run)?;
        let shm = Shared::create(&run.join("shm"))?;
        let journal = Journal::create(&run.join("journal"))?;
        file_0666(&run.join("counter"), &[0; 16])?;
        file_0666(&run.join("flock-outcomes"), b"")?;
        let log = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(run.join("workers.log"))?;
        Ok((bin, shm, journal, log))
    };
    let (bin, shm, journal, log) = match setup_files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("lockattr-soak: cannot set up {}: {err}", run.display());
            let _ = std::fs::remove_dir_all(&run);
            return 2;
        }
    };
    let root = rustix::process::geteuid().is_root();
    let reachable = run.ancestors().all(|dir| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
    });
    let other = match (config.users, root, reachable) {
        (true, true, false) => {
            eprintln!(
                "lockattr-soak: a second user cannot reach {}: a directory above it is closed to \
                 others; choose another --tmp",
                run.display()
            );
            let _ = std::fs::remove_dir_all(&run);
            return 2;
        }
        (users, root, _) => (users, root),
    };
    let other = match other {
        (false, _) => None,
        (true, false) => {
            eprintln!(
                "lockattr-soak: *** not root: every participant runs as this user, none as a second user ***"
            );
            None
        }
        (true, true) => match crate::users::ensure(crate::users::OTHER_USER) {
            Ok(user) => Some(user),
            Err(err) => {
                eprintln!(
                    "lockattr-soak: *** no second user ({err}): every participant runs as root ***"
                );
                None
            }
        },
    };
    let mut stats = ParentStats {
        secs: config.secs as f64,
        workers: config.workers,
        flocks: config.flocks,
        other_user: other.as_ref().map(|u| u.name.to_owned()),
        dir: run.display().to_string(),
        ..ParentStats::default()
    };
    if config.sysctl && !crate::sysctl::writable() {
        stats.sysctl_note = Some("not root: fs.protected_regular left alone".to_owned());
    } else if !config.sysctl {
        stats.sysctl_note = Some("--no-sysctl".to_owned());
    }
    let (cluster, url) = match postgres(config, &run) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("lockattr-soak: {err}");
            let _ = std::fs::remove_dir_all(&run);
            return 2;
        }
    };
    let flocks = if url.is_some() { 0 } else { config.flocks };
    stats.flocks = flocks;
    let secs = Duration::from_secs(config.secs);
    let setup = Setup {
        bin,
        run: run.clone(),
        lock_dir: lock_dir.clone(),
        seed: config.seed,
        other,
        // Workers stop by themselves a minute after the run should have.
        until: now() + (secs + Duration::from_secs(60)).as_nanos() as u64,
        log,
        flock_check: !config.naive_flock,
        url: url.clone(),
    };
    println!(
        "lockattr-soak: seed {} ({} s; {} workers, {} flock(1) scripts; {}; run directory {}; reproduce with --seed {})",
        config.seed,
        config.secs,
        config.workers,
        flocks,
        match &url {
            Some(_) => "PostgreSQL advisory locks",
            None => "lock files",
        },
        run.display(),
        config.seed
    );
    let mut start = Record::new(Kind::Start);
    start.a = config.seed;
    start.b = config.secs;
    start.c = u64::from(url.is_some());
    journal.append(&start);

    let mut parent = Parent {
        config,
        setup: &setup,
        shm,
        journal: &journal,
        rng: Rng::derive(config.seed, &[u64::MAX]),
        slots: Vec::new(),
        window: None,
        window_until: Instant::now(),
        removals: 0,
        stats: &mut stats,
        samples: Vec::new(),
        failed: false,
        flocks,
        url: url.as_deref(),
        cluster: cluster.as_ref(),
    };
    parent.fill_slots();
    let interrupted = parent.main_loop(secs);
    parent.stats.interrupted = interrupted;
    parent.end();
    let samples = std::mem::take(&mut parent.samples);
    drop(parent);
    stats.long_lived = samples;
    if let Some(cluster) = &cluster {
        cluster.stop();
    }

    let records = match journal::read(&run.join("journal")) {
        Ok(records) => records,
        Err(err) => {
            eprintln!("lockattr-soak: cannot read the journal: {err}");
            return 2;
        }
    };
    let counter = std::fs::File::open(run.join("counter"))
        .map(|file| crate::body::read_counter(&OwnedFd::from(file)))
        .unwrap_or((0, 0));
    let flock = std::fs::read_to_string(run.join("flock-outcomes")).unwrap_or_default();
    let log = std::fs::read_to_string(run.join("workers.log")).unwrap_or_default();
    let analysis = crate::analyze::analyze(&records, counter, &flock, &log);
    let outcomes = std::array::from_fn(|w| {
        std::array::from_fn(|o| shm.outcome(crate::way::Way::ALL[w], crate::way::Outcome::ALL[o]))
    });
    print!("{}", crate::report::render(&analysis, &stats, &outcomes));
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("SOAK-ERROR"))
        .take(10)
        .collect();
    if !errors.is_empty() {
        println!("first errors from {}:", run.join("workers.log").display());
        for line in errors {
            println!("  {line}");
        }
    }
    if crate::sysctl::not_restored() {
        println!("FAIL: fs.protected_regular could not be restored (see above)");
    }
    let pass = analysis.failures.is_empty() && !interrupted && !crate::sysctl::not_restored();
    if pass && !config.keep {
        let _ = std::fs::remove_dir_all(&run);
    } else {
        println!("the run's files are kept in {}", run.display());
    }
    if pass { 0 } else { 1 }
}

/// The server of PostgreSQL mode: ours (`auto`) or the one given.
fn postgres(config: &Config, run: &Path) -> Result<(Option<Cluster>, Option<String>), String> {
    let Some(given) = &config.postgres else {
        return Ok((None, None));
    };
    if !cfg!(feature = "postgres") {
        return Err(
            "--postgres needs the `postgres` feature: cargo run --release -p lockattr-soak \
             --features postgres -- --postgres auto"
                .to_owned(),
        );
    }
    match given.as_str() {
        "auto" => {
            let (cluster, url) = Cluster::start(run)?;
            Ok((Some(cluster), Some(url)))
        }
        url => Ok((None, Some(url.to_owned()))),
    }
}

struct Parent<'a> {
    config: &'a Config,
    setup: &'a Setup,
    shm: &'static Shared,
    journal: &'a Journal,
    rng: Rng,
    slots: Vec<Slot>,
    window: Option<Window>,
    window_until: Instant,
    removals: u64,
    stats: &'a mut ParentStats,
    samples: Vec<Sample>,
    failed: bool,
    flocks: usize,
    /// PostgreSQL mode: the server, and ours if we may restart it.
    url: Option<&'a str>,
    cluster: Option<&'a Cluster>,
}

impl Parent<'_> {
    fn fill_slots(&mut self) {
        let workers = self.config.workers.min(shm::SLOTS);
        let flocks = self.flocks.min(shm::SLOTS - workers);
        for index in 0..workers + flocks {
            let role = match index {
                _ if index >= workers => Role::Flock,
                0 | 1 => Role::LongLived,
                _ => Role::Worker,
            };
            self.slots.push(Slot::new(index, role));
        }
    }

    /// Returns whether a signal interrupted the run.
    fn main_loop(&mut self, secs: Duration) -> bool {
        let start = Instant::now();
        let deadline = start + secs;
        let mut next_chaos = start;
        let mut next_sample = start + Duration::from_secs(3);
        let mut last_completed = self.shm.completed.load(SeqCst);
        // Time since the last completed body during which no process was
        // stopped: a stopped holder may hold everyone up, legitimately.
        let mut quiet = Duration::ZERO;
        let mut last_tick = start;
        let max_ticks = secs.as_millis() as u64 / TICK.as_millis() as u64 + 1;
        for _ in 0..max_ticks {
            let now_i = Instant::now();
            if crate::signals::interrupted() {
                println!("lockattr-soak: interrupted; ending the run");
                return true;
            }
            if now_i >= deadline {
                break;
            }
            let reported = self.shm.failures.load(SeqCst);
            if self.failed || reported > 0 {
                println!(
                    "lockattr-soak: a failure was noticed {:.1} s into the run; ending it early",
                    start.elapsed().as_secs_f64()
                );
                break;
            }
            self.reap_and_respawn(false);
            for slot in &mut self.slots {
                if slot.stopped_until.is_some_and(|until| until <= now_i) {
                    slot.cont(self.journal);
                }
            }
            let mut outage = false;
            if now_i >= next_chaos {
                next_chaos = now_i + CHAOS_EVERY;
                outage = self.chaos();
            }
            let lock_file = self.setup.lock_dir.join("soak.lock");
            if let Err(what) = crate::chaos::check_mode(&lock_file) {
                println!("lockattr-soak: FAILURE: the lock file is not 0644: {what}");
                self.failure(Oops::BadFileMode, 0);
            }
            // The hang watchdog.
            let completed = self.shm.completed.load(SeqCst);
            if completed != last_completed {
                (last_completed, quiet) = (completed, Duration::ZERO);
            } else if !self.slots.iter().any(|s| s.stopped_until.is_some()) {
                quiet += now_i.duration_since(last_tick);
            }
            // A server restart is like a stop: time that does not count.
            last_tick = if outage { Instant::now() } else { now_i };
            if quiet > HANG {
                self.hang();
            }
            if now_i >= next_sample {
                next_sample = now_i + Duration::from_secs(2);
                self.sample();
            }
            std::thread::sleep(TICK);
        }
        false
    }

    fn failure(&mut self, oops: Oops, slot: usize) {
        let mut record = Record::new(Kind::Failure);
        record.a = oops as u64;
        record.slot = slot as u8;
        record.inc = self.slots.get(slot).map_or(0, |s| s.inc);
        self.journal.append(&record);
        self.failed = true;
    }

    fn hang(&mut self) {
        let groups: Vec<(usize, u32)> = self
            .slots
            .iter()
            .filter(|s| s.alive())
            .map(|s| (s.index, s.pgid))
            .collect();
        let report = crate::procfs::hang_report(&self.setup.lock_dir, &groups);
        let path = self.setup.run.join("hang-report.txt");
        let _ = std::fs::write(&path, &report);
        println!(
            "lockattr-soak: FAILURE: no body completed for {} s with no process stopped:\n{report}",
            HANG.as_secs()
        );
        self.failure(Oops::Hang, 0);
    }

    fn reap_and_respawn(&mut self, ending: bool) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if let Some(status) = slot.reap(self.shm, self.journal) {
                let finished_script = slot.role == Role::Flock && status.success();
                if !slot.ended_by_us && !finished_script {
                    println!(
                        "lockattr-soak: FAILURE: slot {} (incarnation {}) ended unasked: {status}",
                        slot.index, slot.inc
                    );
                    self.failure(Oops::WorkerDied, i);
                }
                if !ending {
                    let delay = Duration::from_millis(self.rng.range(0, 300));
                    self.slots[i].respawn_at = Some(Instant::now() + delay);
                }
            }
            let slot = &mut self.slots[i];
            if !ending && !slot.alive() && slot.respawn_at.is_some_and(|at| at <= Instant::now()) {
                slot.spawn(self.setup, self.shm, self.journal, &mut self.rng);
            }
        }
    }

    /// One turn of the chaos loop; true if the server was down meanwhile.
    fn chaos(&mut self) -> bool {
        let shm = self.shm;
        let rng = &mut self.rng;
        if rng.chance(60) {
            // SIGKILL: a holder if one is inside, else a waiter, else anyone.
            let killable: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].alive() && self.slots[i].role != Role::LongLived)
                .collect();
            let holders: Vec<usize> = killable
                .iter()
                .copied()
                .filter(|&i| self.slots[i].holds(shm))
                .collect();
            let waiters: Vec<usize> = killable
                .iter()
                .copied()
                .filter(|&i| self.slots[i].waits(shm))
                .collect();
            let pool = match rng.below(10) {
                0..6 if !holders.is_empty() => holders,
                0..8 if !waiters.is_empty() => waiters,
                _ => killable,
            };
            if !pool.is_empty() {
                let victim = pool[rng.below(pool.len() as u64) as usize];
                self.slots[victim].kill(shm, self.journal);
            }
        }
        let rng = &mut self.rng;
        let stopped = self
            .slots
            .iter()
            .filter(|s| s.stopped_until.is_some())
            .count();
        if rng.chance(30) && stopped < 2 {
            let candidates: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].alive() && self.slots[i].stopped_until.is_none())
                .collect();
            if !candidates.is_empty() {
                let victim = candidates[rng.below(candidates.len() as u64) as usize];
                let millis = rng.weighted(&[(60, (50, 500)), (35, (500, 2000)), (5, (2000, 4000))]);
                let until = Instant::now() + Duration::from_millis(rng.range(millis.0, millis.1));
                self.slots[victim].stop(until, self.journal);
            }
        }
        if let Some(url) = self.url {
            return self.database_chaos(url);
        }
        let rng = &mut self.rng;
        if rng.chance(40) {
            let replace = rng.chance(500);
            let owner = match self.setup.other.as_ref() {
                Some(user) if rng.chance(500) => Some(user),
                _ => None,
            };
            self.removals += 1;
            let lock = self.setup.lock_dir.join("soak.lock");
            if let Err(err) =
                crate::chaos::remove(&lock, replace, owner, self.journal, self.removals)
            {
                println!("lockattr-soak: cannot remove or replace the lock file: {err}");
            }
        }
        self.sysctl();
        false
    }

    /// PostgreSQL mode: a backend terminated now and then, and our own
    /// server restarted more rarely. Returns whether the server was down
    /// (the hang clock does not count that time).
    fn database_chaos(&mut self, url: &str) -> bool {
        if self.rng.chance(30) {
            match crate::pgchaos::terminate_one(url) {
                Ok(Some((pid, lock, before, after))) => {
                    let slot = self
                        .slots
                        .iter()
                        .find(|s| s.worker_pid(self.shm) == Some(pid));
                    let mut record = Record::new(Kind::Terminate);
                    if let Some(slot) = slot {
                        (record.slot, record.inc) = (slot.index as u8, slot.inc);
                    }
                    record.a = u64::from(pid);
                    record.b = before;
                    record.t = after;
                    if lock == crate::ways::SOAK.as_str() {
                        record.flags |= crate::journal::flag::HOLDER;
                    }
                    self.journal.append(&record);
                }
                Ok(None) => {}
                Err(err) => println!("lockattr-soak: cannot terminate a backend: {err}"),
            }
        }
        if let Some(cluster) = self.cluster
            && self.rng.chance(4)
        {
            if let Err(err) = cluster.restart(self.journal) {
                println!("lockattr-soak: FAILURE: cannot restart the server: {err}");
                self.failure(Oops::WorkerDied, 0);
            }
            return true;
        }
        false
    }

    /// Opens a window of fs.protected_regular changes now and then, flips
    /// the value inside it, and closes it (restoring the value) on time.
    fn sysctl(&mut self) {
        if !self.config.sysctl || !crate::sysctl::writable() {
            return;
        }
        let now_i = Instant::now();
        match &mut self.window {
            Some(_) if now_i >= self.window_until => self.window = None,
            Some(window) if self.rng.chance(100) => {
                let level = (window.value() + 1 + self.rng.below(2) as u8) % 3;
                match window.set(level) {
                    Ok(()) => {
                        let mut record = Record::new(Kind::Sysctl);
                        record.a = u64::from(level);
                        self.journal.append(&record);
                    }
                    Err(err) => {
                        println!("lockattr-soak: cannot set fs.protected_regular: {err}")
                    }
                }
            }
            Some(_) => {}
            None if self.rng.chance(15) => match Window::open() {
                Some(window) => {
                    self.stats.sysctl_windows += 1;
                    self.window = Some(window);
                    self.window_until = now_i + Duration::from_millis(self.rng.range(2000, 5000));
                }
                None => self.stats.sysctl_skipped += 1,
            },
            None => {}
        }
    }

    /// Descriptors and threads of the long-lived workers.
    fn sample(&mut self) {
        for slot in self.slots.iter().filter(|s| s.role == Role::LongLived) {
            let Some(pid) = slot.worker_pid(self.shm) else {
                continue;
            };
            let Some(now) = crate::procfs::fds_and_threads(pid) else {
                continue;
            };
            let i = match self.samples.iter().position(|s| s.slot == slot.index) {
                Some(i) => i,
                None => {
                    let who = format!(
                        "{}, umask {}",
                        if slot.other_user {
                            crate::users::OTHER_USER
                        } else {
                            "root"
                        },
                        if slot.umask_077 { "077" } else { "022" }
                    );
                    self.samples.push(Sample {
                        slot: slot.index,
                        who,
                        ..Sample::default()
                    });
                    self.samples.len() - 1
                }
            };
            let sample = &mut self.samples[i];
            sample.first.get_or_insert(now);
            sample.last = Some(now);
            sample.max = (sample.max.0.max(now.0), sample.max.1.max(now.1));
        }
    }

    /// Ends the run: the sysctl restored, stopped processes resumed,
    /// scripts killed, workers asked to finish (and killed if they do not
    /// within 20 s), everything reaped.
    fn end(&mut self) {
        self.sample();
        self.journal.append(&Record::new(Kind::End));
        self.window = None;
        for slot in &mut self.slots {
            if slot.stopped_until.is_some() {
                slot.cont(self.journal);
            }
        }
        for i in 0..self.slots.len() {
            match self.slots[i].role {
                Role::Flock => self.slots[i].kill(self.shm, self.journal),
                _ => self.slots[i].ask_to_end(),
            }
        }
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && self.slots.iter().any(Slot::alive) {
            self.reap_and_respawn(true);
            std::thread::sleep(TICK);
        }
        // Every caller's wait ends once the others have gone: a process
        // that does not finish is stuck in lockattr (or its body).
        let stuck: Vec<(usize, u32)> = self
            .slots
            .iter()
            .filter(|s| s.alive())
            .map(|s| (s.index, s.pgid))
            .collect();
        if !stuck.is_empty() {
            let report = crate::procfs::hang_report(&self.setup.lock_dir, &stuck);
            let _ = std::fs::write(self.setup.run.join("end-report.txt"), &report);
            println!(
                "lockattr-soak: FAILURE: slots {stuck:?} did not finish within 20 s of being asked:\n{report}"
            );
        }
        for (i, _) in stuck {
            self.failure(Oops::Stuck, i);
            self.slots[i].kill(self.shm, self.journal);
        }
        for _ in 0..500 {
            self.reap_and_respawn(true);
            if !self.slots.iter().any(Slot::alive) {
                break;
            }
            std::thread::sleep(TICK);
        }
        for sample in &self.samples {
            if let (Some(first), Some(last)) = (sample.first, sample.last)
                && (last.0 > first.0 + GROWTH || last.1 > first.1 + GROWTH)
            {
                let mut record = Record::new(Kind::Failure);
                record.a = Oops::Growth as u64;
                record.slot = sample.slot as u8;
                self.journal.append(&record);
            }
        }
    }
}
