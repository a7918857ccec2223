//! The shared page: a file mapped `MAP_SHARED` by every process of the run.
//!
//! Its heart is the occupancy check. Every holder (a lane: one thread or
//! task of a worker, or a flock(1) helper) owns one bit. An exclusive body
//! sets its bit in `exclusive` with one atomic `fetch_or` and then reads
//! `shared`; a shared body sets its bit in `shared` and reads `exclusive`.
//! All four are `SeqCst`, so of two overlapping bodies the second always
//! sees the first's bit (one word: the RMWs are ordered; two words: the
//! store-buffer pattern, which `SeqCst` forbids). A bit, not a count, so
//! that the parent can clear a killed process's bits without knowing how
//! far it got.
//!
//! A killed holder's bit stays set until the parent clears it, and the
//! kernel hands its lock on before that. The parent therefore marks a
//! slot killed *before* it sends SIGKILL; a bit of a slot marked killed,
//! or whose incarnation changed while we looked, is excused.

use crate::way::{OUTCOMES, Outcome, WAYS, Way};
use rustix::fs::{Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Process slots: worker processes and flock(1) scripts.
pub const SLOTS: usize = 10;
/// Holders per slot: a worker's threads and tasks.
pub const LANES: usize = 6;
const _: () = assert!(SLOTS * LANES <= 64, "one bit per lane in a u64");

const MAGIC: u64 = 0x6c6f_636b_736f_616b; // "locksoak"

#[repr(C)]
pub struct Shared {
    magic: AtomicU64,
    pub exclusive: AtomicU64,
    pub shared: AtomicU64,
    /// Bodies completed, for the parent's hang check.
    pub completed: AtomicU64,
    /// Failures workers noticed (errors, leaks, bodies without a flock):
    /// the parent stops the run early on them.
    pub failures: AtomicU64,
    outcomes: [[AtomicU64; OUTCOMES]; WAYS],
    pub slots: [SlotState; SLOTS],
}

#[repr(C)]
pub struct SlotState {
    /// `incarnation << 1 | killed`.
    word: AtomicU64,
    /// The worker's own pid (behind `runuser` it is not the parent's child).
    pub pid: AtomicU64,
    /// Per lane: `phase << 62 | since` (ns), for the hang report and for
    /// choosing victims.
    lanes: [AtomicU64; LANES],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle = 0,
    Acquiring = 1,
    Inside = 2,
}

impl Shared {
    /// Creates the file (mode 0666: workers of the other user map it too)
    /// and maps it.
    pub fn create(path: &Path) -> std::io::Result<&'static Shared> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o666))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o666))?;
        rustix::fs::ftruncate(&fd, std::mem::size_of::<Shared>() as u64)?;
        let shared = map(&fd)?;
        shared.magic.store(MAGIC, SeqCst);
        Ok(shared)
    }

    pub fn open(path: &Path) -> std::io::Result<&'static Shared> {
        let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        let shared = map(&fd)?;
        if shared.magic.load(SeqCst) != MAGIC {
            return Err(std::io::Error::other("not a soak page"));
        }
        Ok(shared)
    }

    pub fn slot(&self, slot: usize) -> &SlotState {
        &self.slots[slot]
    }

    pub fn count(&self, way: Way, outcome: Outcome) {
        self.outcomes[way as usize][outcome as usize].fetch_add(1, SeqCst);
    }

    pub fn outcome(&self, way: Way, outcome: Outcome) -> u64 {
        self.outcomes[way as usize][outcome as usize].load(SeqCst)
    }

    /// Every slot's `incarnation << 1 | killed`, for [`excused`].
    pub fn snapshot(&self) -> [u64; SLOTS] {
        std::array::from_fn(|slot| self.slots[slot].word.load(SeqCst))
    }
}

fn map(fd: &std::os::fd::OwnedFd) -> std::io::Result<&'static Shared> {
    let len = std::mem::size_of::<Shared>();
    // SAFETY: a fresh mapping of `len` bytes of a file at least that long,
    // never unmapped (it lives as long as the process). Every field is an
    // atomic integer, for which any bit pattern (zero-filled, or written by
    // another process) is valid, and which other processes change only
    // atomically.
    unsafe {
        let ptr = rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )?;
        Ok(&*(ptr as *const Shared))
    }
}

impl SlotState {
    /// Marks the slot's current process as about to be killed.
    pub fn mark_killed(&self) {
        self.word.fetch_or(1, SeqCst);
    }

    /// A new process in the slot: not killed, next incarnation.
    pub fn set_incarnation(&self, incarnation: u32) {
        self.word.store(u64::from(incarnation) << 1, SeqCst);
    }

    pub fn set_phase(&self, lane: usize, phase: Phase, since: u64) {
        self.lanes[lane].store((phase as u64) << 62 | since, SeqCst);
    }

    pub fn phase(&self, lane: usize) -> (Phase, u64) {
        let word = self.lanes[lane].load(SeqCst);
        let phase = match word >> 62 {
            1 => Phase::Acquiring,
            2 => Phase::Inside,
            _ => Phase::Idle,
        };
        (phase, word & ((1 << 62) - 1))
    }

    pub fn clear_phases(&self) {
        for lane in &self.lanes {
            lane.store(0, SeqCst);
        }
    }
}

/// The occupancy bit of a slot's lane.
pub fn bit(slot: usize, lane: usize) -> u64 {
    1 << (slot * LANES + lane)
}

/// All bits of a slot.
pub fn slot_bits(slot: usize) -> u64 {
    ((1u64 << LANES) - 1) << (slot * LANES)
}

/// The slot and lane of a bit.
pub fn lane_of(bit_index: u32) -> (usize, usize) {
    let index = bit_index as usize;
    (index / LANES, index % LANES)
}

/// The bits of `seen` that no killed process explains: `before` and
/// `after` are snapshots taken around the look.
pub fn unexcused(seen: u64, before: &[u64; SLOTS], after: &[u64; SLOTS]) -> u64 {
    let mut left = seen;
    for slot in 0..SLOTS {
        let killed = before[slot] & 1 == 1 || after[slot] & 1 == 1;
        let replaced = before[slot] >> 1 != after[slot] >> 1;
        if killed || replaced {
            left &= !slot_bits(slot);
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_excuses() {
        assert_eq!(bit(0, 0), 1);
        assert_eq!(lane_of(bit(3, 2).trailing_zeros()), (3, 2));
        assert_eq!(slot_bits(1), 0b111111 << 6);
        let quiet = [4u64; SLOTS];
        let mut killed = quiet;
        killed[2] |= 1;
        let seen = bit(2, 1) | bit(4, 0);
        assert_eq!(unexcused(seen, &quiet, &quiet), seen);
        assert_eq!(unexcused(seen, &quiet, &killed), bit(4, 0));
        let mut next = quiet;
        next[4] = 6;
        assert_eq!(unexcused(seen, &quiet, &next), bit(2, 1));
    }
}
