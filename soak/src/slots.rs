//! The parent's side of the participants: one process per slot (a worker,
//! or a flock(1) script), each in a process group of its own so that one
//! signal reaches all of it (`runuser` and the worker behind it; the shell,
//! `flock` and the helper), started again when it ends.

use crate::journal::{Journal, Kind, Record, flag};
use crate::rng::Rng;
use crate::shm::{self, Phase, Shared};
use crate::users::User;
use rustix::process::{Pid, Signal};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs the whole run: never killed, so its descriptors and threads at
    /// the end say whether they grow.
    LongLived,
    Worker,
    Flock,
}

/// How to start participants.
pub struct Setup {
    pub bin: PathBuf,
    pub run: PathBuf,
    pub lock_dir: PathBuf,
    pub seed: u64,
    pub other: Option<User>,
    /// `CLOCK_MONOTONIC` ns at which workers stop by themselves.
    pub until: u64,
    pub log: std::fs::File,
    /// flock(1) scripts check the path after locking (see `flock::SCRIPT`).
    pub flock_check: bool,
    /// PostgreSQL mode: the server's URL.
    pub url: Option<String>,
}

pub struct Slot {
    pub index: usize,
    pub role: Role,
    pub inc: u32,
    /// Changes at every start and end of a process in the slot (the shared
    /// page's incarnation word, see `shm::unexcused`).
    epoch: u32,
    pub child: Option<Child>,
    pub pgid: u32,
    pub stopped_until: Option<Instant>,
    /// We killed it (or asked it to end): its end is no failure.
    pub ended_by_us: bool,
    pub respawn_at: Option<Instant>,
    pub started: Instant,
    pub other_user: bool,
    pub umask_077: bool,
}

impl Slot {
    pub fn new(index: usize, role: Role) -> Slot {
        Slot {
            index,
            role,
            inc: 0,
            epoch: 0,
            child: None,
            pgid: 0,
            stopped_until: None,
            ended_by_us: false,
            respawn_at: Some(Instant::now()),
            started: Instant::now(),
            other_user: false,
            umask_077: false,
        }
    }

    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Some lane of it is inside a body.
    pub fn holds(&self, shm: &Shared) -> bool {
        let state = shm.slot(self.index);
        (0..shm::LANES).any(|lane| state.phase(lane).0 == Phase::Inside)
    }

    pub fn waits(&self, shm: &Shared) -> bool {
        let state = shm.slot(self.index);
        (0..shm::LANES).any(|lane| state.phase(lane).0 == Phase::Acquiring)
    }

    /// Starts the slot's next incarnation.
    pub fn spawn(&mut self, setup: &Setup, shm: &Shared, journal: &Journal, rng: &mut Rng) {
        self.inc += 1;
        self.epoch += 1;
        let state = shm.slot(self.index);
        state.set_incarnation(self.epoch);
        state.pid.store(0, std::sync::atomic::Ordering::SeqCst);
        state.clear_phases();
        self.other_user = setup.other.is_some()
            && match self.role {
                Role::LongLived => self.index % 2 == 1,
                _ => rng.chance(500),
            };
        self.umask_077 = match self.role {
            Role::LongLived => self.index % 2 == 1,
            _ => rng.chance(500),
        };
        let program: &Path = match self.role {
            Role::Flock => Path::new("sh"),
            Role::Worker | Role::LongLived => &setup.bin,
        };
        let mut cmd = match (&setup.other, self.other_user) {
            (Some(user), true) => {
                let mut cmd = Command::new(crate::users::sbin("runuser"));
                cmd.args(["-u", user.name, "--"]).arg(program);
                cmd
            }
            _ => Command::new(program),
        };
        let mask = if self.umask_077 { "077" } else { "022" };
        match self.role {
            Role::Flock => {
                let letters = crate::flock::letters(rng, 40);
                cmd.args(["-c", crate::flock::SCRIPT, "sh"])
                    .arg(&setup.bin)
                    .arg(&setup.run)
                    .arg(&setup.lock_dir)
                    .arg(self.index.to_string())
                    .arg(self.inc.to_string())
                    .arg(setup.seed.to_string())
                    .arg(mask)
                    .arg(if setup.flock_check { "1" } else { "0" })
                    .arg(letters);
            }
            Role::Worker | Role::LongLived => {
                cmd.arg("__worker")
                    .arg(&setup.run)
                    .arg(&setup.lock_dir)
                    .arg(self.index.to_string())
                    .arg(self.inc.to_string())
                    .arg(setup.seed.to_string())
                    .arg(mask)
                    .arg(setup.until.to_string())
                    .arg(setup.url.as_deref().unwrap_or("-"));
            }
        }
        let log = setup.log.try_clone().expect("clone the log descriptor");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .current_dir("/")
            .process_group(0);
        // SAFETY: prctl(2) is async-signal-safe, and nothing else runs
        // between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start a participant");
        self.pgid = child.id();
        self.child = Some(child);
        self.started = Instant::now();
        self.ended_by_us = false;
        self.stopped_until = None;
        self.respawn_at = None;
        let mut record = self.record(Kind::Spawn);
        record.a = u64::from(self.pgid);
        record.flags |= match self.role {
            Role::LongLived => flag::LONG_LIVED,
            Role::Flock => flag::FLOCK,
            Role::Worker => 0,
        };
        if self.other_user {
            record.flags |= flag::OTHER_USER;
        }
        if self.umask_077 {
            record.flags |= flag::UMASK_077;
        }
        journal.append(&record);
    }

    pub fn record(&self, kind: Kind) -> Record {
        let mut record = Record::new(kind);
        record.slot = self.index as u8;
        record.inc = self.inc;
        record
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.pgid as i32) {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }

    /// SIGKILL, after marking the slot killed so that its occupancy bits
    /// are excused from the moment the kernel may hand its lock on.
    pub fn kill(&mut self, shm: &Shared, journal: &Journal) {
        if !self.alive() {
            return;
        }
        let mut record = self.record(Kind::Kill);
        if self.holds(shm) {
            record.flags |= flag::HOLDER;
        }
        shm.slot(self.index).mark_killed();
        journal.append(&record);
        self.signal(Signal::KILL);
        // runuser stops itself when its child stops; let it reap the child.
        self.signal(Signal::CONT);
        self.stopped_until = None;
        self.ended_by_us = true;
    }

    /// SIGSTOP to the slot's processes, except a `runuser` at their head:
    /// runuser stops itself when its child stops, and would stop itself
    /// again after the SIGCONT that wakes them all, if stopped with them (it
    /// learns that its child was stopped only once it runs again).
    pub fn stop(&mut self, until: Instant, journal: &Journal) {
        journal.append(&self.record(Kind::Stop));
        if self.other_user {
            for pid in crate::procfs::group_members(self.pgid) {
                if let Some(pid) = Pid::from_raw(pid as i32).filter(|_| pid != self.pgid) {
                    let _ = rustix::process::kill_process(pid, Signal::STOP);
                }
            }
        } else {
            self.signal(Signal::STOP);
        }
        self.stopped_until = Some(until);
    }

    pub fn cont(&mut self, journal: &Journal) {
        self.signal(Signal::CONT);
        journal.append(&self.record(Kind::Cont));
        self.stopped_until = None;
    }

    /// Asks a worker to finish: end of its input.
    pub fn ask_to_end(&mut self) {
        if let Some(child) = &mut self.child {
            drop(child.stdin.take());
            self.ended_by_us = true;
        }
    }

    /// If the process ended: journals it, clears what it left in the shared
    /// page, and returns how it ended.
    pub fn reap(&mut self, shm: &Shared, journal: &Journal) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        let mut record = self.record(Kind::Reap);
        record.a = std::os::unix::process::ExitStatusExt::into_raw(status) as u64;
        journal.append(&record);
        // The kernel released its locks; the bits are ours to clear. Then a
        // new incarnation, so that a body that saw the old bits excuses them.
        let bits = shm::slot_bits(self.index);
        shm.exclusive
            .fetch_and(!bits, std::sync::atomic::Ordering::SeqCst);
        shm.shared
            .fetch_and(!bits, std::sync::atomic::Ordering::SeqCst);
        self.epoch += 1;
        let state = shm.slot(self.index);
        state.set_incarnation(self.epoch);
        state.clear_phases();
        self.stopped_until = None;
        Some(status)
    }

    /// The worker's own pid (behind runuser it is not our child).
    pub fn worker_pid(&self, shm: &Shared) -> Option<u32> {
        let pid = shm
            .slot(self.index)
            .pid
            .load(std::sync::atomic::Ordering::SeqCst);
        (pid != 0 && self.alive()).then_some(pid as u32)
    }
}

/// Copies this binary where every user may run it (a checkout under /root
/// is 0700), so the workers also survive a rebuild during the run.
pub fn install_binary(run: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let bin = run.join("bin");
    std::fs::create_dir(&bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let copy = bin.join("lockattr-soak");
    std::fs::copy(std::env::current_exe()?, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    Ok(copy)
}
