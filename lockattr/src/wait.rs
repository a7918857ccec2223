//! Waiting: `wait` and `wait = "DUR"`, for threads and for async tasks.
//!
//! The kernel side (one thread blocked in flock(2) per busy lock file) lives
//! in the registry; here are the waiters' deadlines, the "still waiting"
//! notice, and the one timer thread that wakes async waiters on time without
//! an async runtime.

use crate::error::{Error, Holder};
use crate::file::LockMode;
use crate::holder::HolderId;
use crate::registry::{Slot, Step};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a wait goes on before it says so on stderr, as Cargo's
/// "Blocking waiting for file lock" does.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// How long to wait when the lock is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    No,
    Forever,
    For(Duration),
}

/// Counts a waiter in its slot for as long as it lives.
struct Waiting<'a>(&'a Slot);

impl<'a> Waiting<'a> {
    fn new(slot: &'a Slot) -> Waiting<'a> {
        slot.set_waiting(true);
        Waiting(slot)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set_waiting(false);
    }
}

/// Takes the lock for `holder`, waiting on this thread as `wait` says.
pub(crate) fn acquire_blocking(
    slot: &Arc<Slot>,
    label: &'static str,
    mode: LockMode,
    wait: Wait,
    holder: HolderId,
) -> Result<(), Error> {
    let limit = match wait {
        Wait::No => return slot.try_now(label, mode, holder),
        Wait::Forever => None,
        Wait::For(limit) => Some(limit),
    };
    let start = Instant::now();
    let _waiting = Waiting::new(slot);
    // A limit too long for `Instant` is no limit.
    let deadline = limit.and_then(|limit| start.checked_add(limit));
    let notice_at = Some(start + NOTICE_AFTER).filter(|at| deadline.is_none_or(|d| *at < d));
    slot.wait_blocking(label, mode, holder, deadline, notice_at, |holder| {
        notice(label, slot, holder, limit)
    })
}

fn notice(label: &str, slot: &Slot, holder: &Holder, limit: Option<Duration>) {
    let path = slot.path().display();
    match limit {
        Some(limit) => eprintln!(
            "lockattr: waiting for lock \"{label}\" ({path}), held by {holder}; will wait up to {}",
            Human(limit)
        ),
        None => eprintln!(
            "lockattr: waiting for lock \"{label}\" ({path}), held by {holder}; waiting until it is free"
        ),
    }
}

/// A duration as the attribute spells it: `250ms`, `30s`, `5m`, `1h`.
struct Human(Duration);

impl std::fmt::Display for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) => {
                write!(f, "{}h", ms / 3_600_000)
            }
            _ if ms >= 60_000 && ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms >= 1_000 && ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// The future of an async acquisition. It never blocks the thread that polls
/// it; dropping it withdraws from the wait.
pub(crate) struct AcquireAsync {
    slot: Arc<Slot>,
    label: &'static str,
    mode: LockMode,
    holder: HolderId,
    limit: Option<Duration>,
    /// Set on the first poll that has to wait.
    started: Option<Started>,
}

struct Started {
    deadline: Option<Instant>,
    notice_at: Option<Instant>,
    /// The instant the timer will wake us at, so it is asked once per instant.
    timer_at: Option<Instant>,
}

impl AcquireAsync {
    pub(crate) fn new(
        slot: Arc<Slot>,
        label: &'static str,
        mode: LockMode,
        limit: Option<Duration>,
        holder: HolderId,
    ) -> Self {
        AcquireAsync {
            slot,
            label,
            mode,
            holder,
            limit,
            started: None,
        }
    }
}

impl Future for AcquireAsync {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let started = this.started.get_or_insert_with(|| {
            this.slot.set_waiting(true);
            let start = Instant::now();
            let deadline = this.limit.and_then(|limit| start.checked_add(limit));
            let notice_at =
                Some(start + NOTICE_AFTER).filter(|at| deadline.is_none_or(|d| *at < d));
            Started {
                deadline,
                notice_at,
                timer_at: None,
            }
        });
        let step = this
            .slot
            .poll_wait(this.label, this.mode, this.holder, cx.waker());
        let now = Instant::now();
        let outcome = match step {
            Ok(Step::Held) => Ok(()),
            Err(err) => Err(err),
            Ok(Step::Wait) if started.deadline.is_some_and(|d| now >= d) => {
                Err(this.slot.busy(this.label))
            }
            Ok(Step::Wait) => {
                if started.notice_at.is_some_and(|at| now >= at) {
                    notice(this.label, &this.slot, &this.slot.holder_now(), this.limit);
                    started.notice_at = None;
                }
                let next = [started.deadline, started.notice_at]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(next) = next.filter(|next| started.timer_at != Some(*next)) {
                    wake_at(next, cx.waker().clone());
                    started.timer_at = Some(next);
                }
                return Poll::Pending;
            }
        };
        this.started = None;
        this.slot.set_waiting(false);
        Poll::Ready(outcome)
    }
}

impl Drop for AcquireAsync {
    fn drop(&mut self) {
        if self.started.is_some() {
            // Cancelled: withdraw, so a lock the kernel grants later is let
            // go at once instead of being kept for nobody.
            self.slot.set_waiting(false);
        }
    }
}

/// The timer thread: wakes async waiters at their deadlines, so waiting
/// needs no async runtime. One thread for the whole process, started by the
/// first async wait; an entry of a cancelled wait only wakes a waker that
/// nobody listens to any more.
struct Timer {
    queue: Mutex<BinaryHeap<Alarm>>,
    changed: Condvar,
}

/// A waker due at an instant; the heap pops the earliest first.
struct Alarm(Instant, Waker);

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.cmp(&self.0)
    }
}

fn wake_at(at: Instant, waker: Waker) {
    static TIMER: OnceLock<Option<Timer>> = OnceLock::new();
    let timer = TIMER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("lockattr-timer".into())
            .spawn(|| run_timer(TIMER.wait().as_ref().expect("the timer exists")));
        spawned.ok().map(|_| Timer {
            queue: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        })
    });
    match timer {
        Some(timer) => {
            timer
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Alarm(at, waker));
            timer.changed.notify_one();
        }
        // No timer thread could be started: wake now, so the waiter polls
        // again (and checks its deadline) rather than hang.
        None => waker.wake(),
    }
}

fn run_timer(timer: &Timer) {
    let mut queue = timer.queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = Instant::now();
        while queue.peek().is_some_and(|alarm| alarm.0 <= now) {
            queue.pop().expect("peeked").1.wake();
        }
        queue = match queue.peek() {
            Some(alarm) => {
                let timeout = alarm.0 - now;
                let woken = timer.changed.wait_timeout(queue, timeout);
                woken.unwrap_or_else(PoisonError::into_inner).0
            }
            None => timer
                .changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}
