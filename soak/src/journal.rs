//! The journal: one `O_APPEND` file of fixed-size records that every
//! process of the run (workers, flock(1) helpers, the parent) appends to.
//! A record is one write(2) of 64 bytes, so records never interleave, and a
//! process killed mid-way leaves whole records or none. Times are
//! `CLOCK_MONOTONIC` nanoseconds, which every process of a host reads from
//! one clock: intervals of different processes can be compared.

use rustix::fs::{Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::Path;

pub const RECORD: usize = 64;

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn now() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a record says. The meaning of `a`..`d` depends on it (see each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The run began: `a` = the seed, `b` = its planned seconds, `c` = 1
    /// in PostgreSQL mode (an entry's `a` is then a fencing token).
    Start = 1,
    /// A body began, `t` taken right after the lock was granted: `a` = the
    /// file the process holds its flock on (`fileid`; 0: none found), `b` = how long
    /// the caller waited (ns), or for a nested body the id of the body it
    /// is nested in, `c` and `d` = exclusive and shared occupancy bits of
    /// other holders that were set and not excused (see `shm`).
    Enter = 2,
    /// A body ended, `t` taken after its occupancy bit was cleared: for an
    /// exclusive body `a` = the counter value read, `b` = the body that
    /// wrote it, `c` = the value written (0: no write); for a shared body
    /// `c` and `d` = the counter at entry and at exit.
    Exit = 3,
    /// An exclusive body read the counter and is about to write it: `a` =
    /// the value read, `b` = the body that wrote it. Journalled before the
    /// write, so that a writer killed right after its write is still known
    /// to have read its predecessor's value.
    Read = 4,
    /// The parent started a process in a slot: `a` = its pid.
    Spawn = 10,
    /// The parent is about to SIGKILL a slot's processes.
    Kill = 11,
    Stop = 12,
    Cont = 13,
    /// The parent reaped a slot's process: `a` = its wait status.
    Reap = 14,
    /// The parent removed the lock file (`rm`): `a` = the file (`fileid`),
    /// `b` = the time just before, `t` the time just after.
    Delete = 15,
    /// The parent put a new file over the lock file (`mv`): as `Delete`,
    /// and `c` = the new file.
    Replace = 16,
    /// The parent set fs.protected_regular to `a`.
    Sysctl = 17,
    /// PostgreSQL mode: the parent terminated the backend of a session of
    /// the slot's process (`a` = its pid; flag `HOLDER`: a session of the
    /// soak's lock), between `b` and `t`.
    Terminate = 18,
    /// PostgreSQL mode: the parent restarted the server, between `b` and
    /// `t`.
    Restart = 19,
    /// A worker could not take the lock for a reason other than busy, or
    /// an unexpected panic: `a` = an [`Oops`] code. The message is in the
    /// workers' log.
    Error = 20,
    /// A process held the lock file's flock although none of its callers
    /// held the lock: `a` = the file.
    Leak = 21,
    /// The parent found a failure of its own: `a` = an [`Oops`] code.
    Failure = 22,
    /// The run ended (before the workers were told to stop).
    End = 30,
}

impl Kind {
    fn from_u8(raw: u8) -> Option<Kind> {
        use Kind::*;
        [
            Start, Enter, Exit, Read, Spawn, Kill, Stop, Cont, Reap, Delete, Replace, Sysctl,
            Terminate, Restart, Error, Leak, Failure, End,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == raw)
    }
}

/// Failure codes of `Error` and `Failure` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Oops {
    LockError = 1,
    UnexpectedPanic = 2,
    Hang = 3,
    WorkerDied = 4,
    BadFileMode = 5,
    Growth = 6,
    /// A thread still held the lock after its function returned.
    StillHeld = 8,
    /// A process did not finish within 20 s of being asked to.
    Stuck = 9,
}

impl Oops {
    pub fn from_u64(raw: u64) -> Option<Oops> {
        use Oops::*;
        [
            LockError,
            UnexpectedPanic,
            Hang,
            WorkerDied,
            BadFileMode,
            Growth,
            StillHeld,
            Stuck,
        ]
        .into_iter()
        .find(|oops| *oops as u64 == raw)
    }
}

pub mod flag {
    /// The body or request was exclusive.
    pub const EXCLUSIVE: u8 = 1;
    /// A body nested in another of the same holder.
    pub const NESTED: u8 = 2;
    /// The process held no flock on the lock file when the body began.
    pub const NO_FLOCK: u8 = 4;
    /// An exclusive body found only a shared flock.
    pub const WRONG_MODE: u8 = 8;
    /// Spawn: the process runs as the second user.
    pub const OTHER_USER: u8 = 16;
    /// Spawn: under umask 077.
    pub const UMASK_077: u8 = 32;
    /// Spawn: a worker that lives the whole run (never killed).
    pub const LONG_LIVED: u8 = 64;
    /// Spawn: a flock(1) script; Kill: the victim held the lock.
    pub const FLOCK: u8 = 128;
    pub const HOLDER: u8 = 128;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub way: u8,
    pub slot: u8,
    pub lane: u8,
    pub flags: u8,
    /// Exit records: how the body ended (`Exit`).
    pub exit: u8,
    pub inc: u32,
    pub t: u64,
    pub id: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
}

impl Record {
    pub fn new(kind: Kind) -> Record {
        Record {
            kind: kind as u8,
            t: now(),
            ..Record::default()
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u8(self.kind)
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn encode(&self) -> [u8; RECORD] {
        let mut out = [0u8; RECORD];
        out[..6].copy_from_slice(&[
            self.kind, self.way, self.slot, self.lane, self.flags, self.exit,
        ]);
        out[8..12].copy_from_slice(&self.inc.to_le_bytes());
        for (i, word) in [self.t, self.id, self.a, self.b, self.c, self.d]
            .into_iter()
            .enumerate()
        {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    fn decode(raw: &[u8]) -> Record {
        let word = |i: usize| u64::from_le_bytes(raw[16 + 8 * i..24 + 8 * i].try_into().unwrap());
        Record {
            kind: raw[0],
            way: raw[1],
            slot: raw[2],
            lane: raw[3],
            flags: raw[4],
            exit: raw[5],
            inc: u32::from_le_bytes(raw[8..12].try_into().unwrap()),
            t: word(0),
            id: word(1),
            a: word(2),
            b: word(3),
            c: word(4),
            d: word(5),
        }
    }
}

/// How a body ended, as its `Exit` record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Normal = 1,
    /// `return` in the locked function.
    Return = 2,
    /// `?` on the body's own error.
    Question = 3,
    Panic = 4,
    /// An async body dropped by `tokio::time::timeout`.
    Cancelled = 5,
}

impl Exit {
    pub const ALL: [Exit; 5] = [
        Exit::Normal,
        Exit::Return,
        Exit::Question,
        Exit::Panic,
        Exit::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Exit::Normal => "normal",
            Exit::Return => "return",
            Exit::Question => "?",
            Exit::Panic => "panic",
            Exit::Cancelled => "cancelled",
        }
    }
}

/// The journal, opened for appending.
pub struct Journal {
    fd: OwnedFd,
}

impl Journal {
    /// Creates it, empty and writable by every user of the run.
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::APPEND;
        let fd = rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::from_raw_mode(0o666))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o666))?;
        Ok(Journal { fd })
    }

    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        Ok(Journal { fd })
    }

    /// Appends one record in one write(2). A journal that cannot be
    /// written makes the run meaningless: stop the process loudly.
    pub fn append(&self, record: &Record) {
        let bytes = record.encode();
        loop {
            match rustix::io::write(&self.fd, &bytes) {
                Ok(RECORD) => return,
                Err(rustix::io::Errno::INTR) => continue,
                other => {
                    eprintln!("lockattr-soak: cannot append to the journal: {other:?}");
                    crate::sysctl::restore_now();
                    std::process::abort();
                }
            }
        }
    }
}

/// Every record of a journal, in the order they were appended.
pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.chunks_exact(RECORD).map(Record::decode).collect())
}

#[cfg(test)]
mod tests {
    use super::{Kind, Record};

    #[test]
    fn records_round_trip() {
        let record = Record {
            kind: Kind::Exit as u8,
            way: 3,
            slot: 9,
            lane: 5,
            flags: 0x81,
            exit: 4,
            inc: 77,
            t: u64::MAX - 1,
            id: 1 << 60,
            a: 1,
            b: 2,
            c: 3,
            d: 4,
        };
        assert_eq!(Record::decode(&record.encode()), record);
        assert_eq!(record.kind(), Some(Kind::Exit));
    }
}
