//! What every protected body does, whoever runs it (a thread, a task, a
//! flock(1) helper): the checks that do not trust lockattr.
//!
//! On entry: take the time, set this holder's occupancy bit and look at the
//! others' (`shm`), ask the kernel which flock this process holds (`held`),
//! and journal it all. An exclusive body then does a read-modify-write of
//! the counter file, naming itself as the writer; a shared body reads the
//! counter on entry and on exit, and nobody may have written it between. On
//! exit (normal, `return`, `?`, panic, or the drop of a cancelled future):
//! clear the bit, then take the time and journal how it ended. The bit is
//! set after the entry time and cleared before the exit time, so a bit seen
//! set always means the journal shows the two intervals overlapping.

use crate::held::{self, Held};
use crate::journal::{Exit, Journal, Kind, Record, flag, now};
use crate::shm::{self, Phase, Shared};
use crate::way::Way;
use rustix::fs::{Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

/// How a process finds the flock it holds.
pub enum Probe {
    /// A worker: whichever descriptor of the lock file lockattr keeps.
    Path(PathBuf),
    /// A flock(1) helper: the descriptor the script locked.
    Fd(i32),
    /// A PostgreSQL advisory lock: no file to ask the kernel about; the
    /// entry records the hold's fencing token instead.
    Database,
}

/// One process's side of the run.
pub struct Ctx {
    pub shm: &'static Shared,
    pub journal: Journal,
    counter: OwnedFd,
    probe: Probe,
    pub slot: usize,
    pub inc: u32,
    next: AtomicU64,
    /// Callers inside lockattr or a body; `CLOSED` while a lane checks that
    /// the process holds no flock it should not (`Gate`).
    gate: AtomicUsize,
}

const CLOSED: usize = usize::MAX / 2;

impl Ctx {
    pub fn new(run: &Path, probe: Probe, slot: usize, inc: u32, first: u64) -> Ctx {
        let shm = Shared::open(&run.join("shm")).expect("map the shared page");
        let journal = Journal::open(&run.join("journal")).expect("open the journal");
        let counter = rustix::fs::open(
            run.join("counter"),
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the counter");
        Ctx {
            shm,
            journal,
            counter,
            probe,
            slot,
            inc,
            next: AtomicU64::new(first),
            gate: AtomicUsize::new(0),
        }
    }

    /// A body id unique in the run: slot, incarnation, sequence.
    fn next_id(&self) -> u64 {
        let seq = self.next.fetch_add(1, SeqCst) & 0xffff_ffff;
        (self.slot as u64 + 1) << 56 | u64::from(self.inc) << 32 | seq
    }

    fn held(&self) -> Option<Held> {
        match &self.probe {
            Probe::Path(path) => held::by_path(path),
            Probe::Fd(fd) => held::by_fd(*fd),
            Probe::Database => None,
        }
    }

    /// The counter file: the count and the id of the body that wrote it.
    pub fn read_counter(&self) -> (u64, u64) {
        read_counter(&self.counter)
    }

    fn write_counter(&self, count: u64, writer: u64) {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&count.to_le_bytes());
        bytes[8..].copy_from_slice(&writer.to_le_bytes());
        let written = retry(|| rustix::io::pwrite(&self.counter, &bytes, 0));
        assert_eq!(written.ok(), Some(16), "write the counter");
    }

    /// Counts a caller in; waits while a leak check runs.
    pub fn gate_try_enter(&self) -> bool {
        let now = self.gate.load(SeqCst);
        now < CLOSED
            && self
                .gate
                .compare_exchange(now, now + 1, SeqCst, SeqCst)
                .is_ok()
    }

    pub fn gate_enter(&self) {
        for _ in 0..10_000 {
            if self.gate_try_enter() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the leak check kept the gate closed for 10 s");
    }

    pub fn gate_leave(&self) {
        self.gate.fetch_sub(1, SeqCst);
    }

    /// When no caller of this process is inside lockattr or a body, the
    /// process must hold no flock on the lock file: a flock left behind is
    /// a lock that was never released. One exception: lockattr's helper
    /// thread of a wait that was given up may be granted the lock and must
    /// then let it go at once, so a flock is a leak only if it stays a
    /// second. Returns the file leaked, if any; skips if callers are busy.
    pub fn leak_check(&self) -> Option<u64> {
        if self
            .gate
            .compare_exchange(0, CLOSED, SeqCst, SeqCst)
            .is_err()
        {
            return None;
        }
        let mut leaked = None;
        for _ in 0..100 {
            leaked = self.held().map(|held| held.file);
            if leaked.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.gate.store(0, SeqCst);
        if let Some(file) = leaked {
            let mut record = self.record(Kind::Leak, 0);
            record.a = file;
            self.journal.append(&record);
            self.shm.failures.fetch_add(1, SeqCst);
        }
        leaked
    }

    /// PostgreSQL mode: no lock file.
    pub fn database(&self) -> bool {
        matches!(self.probe, Probe::Database)
    }

    pub fn record(&self, kind: Kind, lane: usize) -> Record {
        let mut record = Record::new(kind);
        record.slot = self.slot as u8;
        record.inc = self.inc;
        record.lane = lane as u8;
        record
    }
}

pub fn read_counter(fd: &OwnedFd) -> (u64, u64) {
    let mut bytes = [0u8; 16];
    let read = retry(|| rustix::io::pread(fd, &mut bytes, 0));
    assert_eq!(read.ok(), Some(16), "read the counter");
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    (word(0), word(1))
}

fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// One holder: a thread or a task of a worker, or a flock(1) helper.
pub struct Lane {
    pub ctx: &'static Ctx,
    pub index: usize,
    /// How deep in nested bodies it is.
    depth: AtomicU32,
    /// The outermost body it is in.
    outer: AtomicU64,
    /// When its current call into lockattr began.
    call_start: AtomicU64,
}

impl Lane {
    pub fn new(ctx: &'static Ctx, index: usize) -> Lane {
        Lane {
            ctx,
            index,
            depth: AtomicU32::new(0),
            outer: AtomicU64::new(0),
            call_start: AtomicU64::new(0),
        }
    }

    /// Before calling a locked function: the wait is measured from here.
    pub fn calling(&self) {
        let t = now();
        self.call_start.store(t, SeqCst);
        self.ctx
            .shm
            .slot(self.ctx.slot)
            .set_phase(self.index, Phase::Acquiring, t);
    }

    pub fn returned(&self) {
        self.ctx
            .shm
            .slot(self.ctx.slot)
            .set_phase(self.index, Phase::Idle, now());
    }

    /// The body of a locked function begins: first thing in it.
    pub fn enter(&self, way: Way) -> Body<'_> {
        let t0 = now();
        let ctx = self.ctx;
        let nested = self.depth.fetch_add(1, SeqCst) > 0;
        let exclusive = way.exclusive();
        let id = ctx.next_id();
        let mut record = ctx.record(Kind::Enter, self.index);
        record.t = t0;
        record.way = way as u8;
        record.id = id;
        if exclusive {
            record.flags |= flag::EXCLUSIVE;
        }
        if nested {
            record.flags |= flag::NESTED;
            record.b = self.outer.load(SeqCst);
        } else {
            self.outer.store(id, SeqCst);
            record.b = t0.saturating_sub(self.call_start.load(SeqCst));
            let (others_exclusive, others_shared) = self.occupy(exclusive);
            record.c = others_exclusive;
            record.d = others_shared;
            ctx.shm
                .slot(ctx.slot)
                .set_phase(self.index, Phase::Inside, t0);
        }
        match (&ctx.probe, ctx.held()) {
            (Probe::Database, _) if exclusive && !nested => {
                let token = lockattr::Lock::new(crate::ways::SOAK).fencing_token();
                record.a = token.unwrap_or(0);
            }
            (Probe::Database, _) => {}
            (_, Some(held)) => {
                record.a = held.file;
                if exclusive && !held.exclusive {
                    record.flags |= flag::WRONG_MODE;
                }
            }
            (_, None) => record.flags |= flag::NO_FLOCK,
        }
        // Certain failures stop the run early; an overlap with another
        // process waits for the replay, which may explain it.
        let same_process = (record.c | record.d) & shm::slot_bits(ctx.slot) != 0;
        if same_process || record.has(flag::NO_FLOCK | flag::WRONG_MODE) {
            ctx.shm.failures.fetch_add(1, SeqCst);
        }
        let seen_at_entry = if exclusive { 0 } else { ctx.read_counter().0 };
        ctx.journal.append(&record);
        Body {
            lane: self,
            id,
            way,
            exclusive,
            nested,
            exit: None,
            rmw: None,
            seen_at_entry,
        }
    }

    /// Sets this holder's bit; returns the other holders' bits it found set
    /// that no kill excuses (exclusive, shared).
    fn occupy(&self, exclusive: bool) -> (u64, u64) {
        let shm = self.ctx.shm;
        let bit = shm::bit(self.ctx.slot, self.index);
        let before = shm.snapshot();
        let (seen_exclusive, seen_shared) = if exclusive {
            let old = shm.exclusive.fetch_or(bit, SeqCst);
            (old, shm.shared.load(SeqCst))
        } else {
            let old = shm.shared.fetch_or(bit, SeqCst);
            (shm.exclusive.load(SeqCst), old)
        };
        let after = shm.snapshot();
        let others_exclusive = shm::unexcused(seen_exclusive & !bit, &before, &after);
        let others_shared = match exclusive {
            true => shm::unexcused(seen_shared & !bit, &before, &after),
            false => 0,
        };
        (others_exclusive, others_shared)
    }
}

/// A body in progress; dropping it ends the body, however the function
/// is left.
pub struct Body<'a> {
    lane: &'a Lane,
    id: u64,
    way: Way,
    exclusive: bool,
    nested: bool,
    exit: Option<Exit>,
    /// Read, the writer read, written.
    rmw: Option<(u64, u64, u64)>,
    seen_at_entry: u64,
}

impl<'a> Body<'a> {
    pub fn exclusive(&self) -> bool {
        self.exclusive
    }

    pub fn lane(&self) -> &'a Lane {
        self.lane
    }

    pub fn way(&self) -> Way {
        self.way
    }

    /// The read-modify-write of the counter, with `gap` between the read
    /// and the write, so that two bodies running at once lose an update.
    pub fn read_modify_write(&mut self, gap: Duration) {
        let ctx = self.lane.ctx;
        let (count, writer) = ctx.read_counter();
        let mut record = ctx.record(Kind::Read, self.lane.index);
        (record.id, record.a, record.b) = (self.id, count, writer);
        ctx.journal.append(&record);
        pause(gap);
        ctx.write_counter(count + 1, self.id);
        self.rmw = Some((count, writer, count + 1));
    }

    /// How the locked function is about to be left (a panic or a drop of
    /// the future needs no word).
    pub fn leaving(&mut self, exit: Exit) {
        self.exit = Some(exit);
    }
}

impl Drop for Body<'_> {
    fn drop(&mut self) {
        let lane = self.lane;
        let ctx = lane.ctx;
        let mut record = ctx.record(Kind::Exit, lane.index);
        record.way = self.way as u8;
        record.id = self.id;
        record.exit = match (std::thread::panicking(), self.exit) {
            (true, _) => Exit::Panic,
            (false, Some(exit)) => exit,
            (false, None) => Exit::Cancelled,
        } as u8;
        if self.exclusive {
            record.flags |= flag::EXCLUSIVE;
            if let Some((read, writer, written)) = self.rmw {
                (record.a, record.b, record.c) = (read, writer, written);
            }
        } else {
            // Still inside: nobody may have written since the entry.
            record.c = self.seen_at_entry;
            record.d = ctx.read_counter().0;
        }
        if self.nested {
            record.flags |= flag::NESTED;
        } else {
            let bit = shm::bit(ctx.slot, lane.index);
            let mask = match self.exclusive {
                true => &ctx.shm.exclusive,
                false => &ctx.shm.shared,
            };
            mask.fetch_and(!bit, SeqCst);
        }
        lane.depth.fetch_sub(1, SeqCst);
        record.t = now();
        ctx.journal.append(&record);
        ctx.shm.completed.fetch_add(1, SeqCst);
    }
}

/// Waits `gap`: a few microseconds by spinning (a sleep would last far
/// longer), more by sleeping.
pub fn pause(gap: Duration) {
    if gap.is_zero() {
        return;
    }
    if gap < Duration::from_micros(200) {
        let until = std::time::Instant::now() + gap;
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
    } else {
        std::thread::sleep(gap);
    }
}
