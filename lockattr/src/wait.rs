//! Waiting: `wait` and `wait = "DUR"`, for threads and for async tasks.
//!
//! The backend side (one helper thread per busy lock waits in flock(2) or
//! in the database) lives in the registry; here are the waiters'
//! deadlines, the "still waiting" notice, and the one timer thread that
//! wakes async waiters on time without an async runtime.

use crate::error::Error;
use crate::file::LockMode;
use crate::holder::HolderId;
use crate::messages;
use crate::registry::{Slot, Step};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a wait goes on before it says so, as Cargo's "Blocking waiting
/// for file lock" does.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// How long to wait when the lock is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    No,
    Forever,
    For(Duration),
}

/// Counts a waiter in its slot for as long as it lives, and knows when the
/// "still waiting" notice is due. The notice is said by the waiting thread
/// itself (or the thread polling the waiting task), so that it reaches the
/// subscriber, or the test's captured output, of whoever waits; and once
/// per lock per process, however many wait. An uncontended `wait` call
/// allocates nothing.
pub(crate) struct Waiting {
    slot: &'static Slot,
    limit: Option<Duration>,
    start: Instant,
    /// When the notice is due; `None` once said, or when the wait must end
    /// before it would be.
    notice_at: Option<Instant>,
}

impl Waiting {
    fn new(slot: &'static Slot, limit: Option<Duration>) -> Waiting {
        slot.set_waiting(true);
        let start = Instant::now();
        let notice_at = match limit {
            Some(limit) if limit <= NOTICE_AFTER => None,
            _ => start.checked_add(NOTICE_AFTER),
        };
        Waiting {
            slot,
            limit,
            start,
            notice_at,
        }
    }

    /// When the notice is due, if it has not been said.
    pub(crate) fn notice_at(&self) -> Option<Instant> {
        self.notice_at
    }

    /// Says the notice, unless another waiter of this lock did. Never under
    /// the slot's mutex: looking up the holder can take milliseconds.
    pub(crate) fn say_notice(&mut self) {
        self.notice_at = None;
        if self.slot.first_notice() {
            let holder = self.slot.holder_now();
            let place = self.slot.place();
            messages::waiting(self.slot.name(), &place, &holder, self.limit);
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Also when cancelled: withdraw, so a lock the backend grants later
        // is let go at once instead of being kept for nobody.
        self.slot.set_waiting(false);
    }
}

/// Takes the lock for `holder`, waiting on this thread as `wait` says.
pub(crate) fn acquire_blocking(
    slot: &'static Slot,
    mode: LockMode,
    wait: Wait,
    holder: HolderId,
) -> Result<(), Error> {
    let limit = match wait {
        Wait::No => return slot.try_now(mode, holder),
        Wait::Forever => None,
        Wait::For(limit) => Some(limit),
    };
    let mut waiting = Waiting::new(slot, limit);
    // A limit too long for `Instant` is no limit.
    let deadline = limit.and_then(|limit| waiting.start.checked_add(limit));
    slot.wait_blocking(mode, holder, deadline, &mut waiting)
}

/// The future of an async acquisition. It never blocks the thread that polls
/// it; dropping it withdraws from the wait.
pub(crate) struct AcquireAsync {
    slot: &'static Slot,
    mode: LockMode,
    holder: HolderId,
    limit: Option<Duration>,
    /// Set on the first poll.
    started: Option<Started>,
}

struct Started {
    waiting: Waiting,
    deadline: Option<Instant>,
    /// The timer's wake-up, at the deadline or the notice, once asked for.
    alarm: Option<(Instant, Alarm)>,
}

impl AcquireAsync {
    pub(crate) fn new(
        slot: &'static Slot,
        mode: LockMode,
        limit: Option<Duration>,
        holder: HolderId,
    ) -> Self {
        AcquireAsync {
            slot,
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
            let waiting = Waiting::new(this.slot, this.limit);
            let deadline = this
                .limit
                .and_then(|limit| waiting.start.checked_add(limit));
            Started {
                waiting,
                deadline,
                alarm: None,
            }
        });
        let deadline = started.deadline;
        let outcome = match this
            .slot
            .poll_wait(this.mode, this.holder, deadline, cx.waker())
        {
            Ok(Step::Held) => Ok(()),
            Err(err) => Err(err),
            Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => Err(this.slot.busy()),
            Ok(_) => {
                if started
                    .waiting
                    .notice_at()
                    .is_some_and(|at| Instant::now() >= at)
                {
                    started.waiting.say_notice();
                }
                let next = [deadline, started.waiting.notice_at()]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(next) = next
                    && started.alarm.as_ref().is_none_or(|(at, _)| *at != next)
                {
                    started.alarm = Some((next, wake_at(next, cx.waker().clone())));
                }
                return Poll::Pending;
            }
        };
        this.started = None; // withdraws from the wait
        Poll::Ready(outcome)
    }
}

/// The timer thread: wakes async waiters at their deadlines and when their
/// notice is due, so waiting needs no async runtime. One thread for the
/// whole process, started by the first wait. An alarm is withdrawn when its
/// wait ends, so waits that end early leave nothing queued.
struct Timer {
    alarms: Mutex<Alarms>,
    changed: Condvar,
}

#[derive(Default)]
struct Alarms {
    due: BTreeMap<(Instant, u64), Waker>,
    /// When the timer thread will look next (`None`: when told). A new
    /// alarm wakes it only if due earlier: waking it for every wait would
    /// cost two context switches per wait.
    looks_at: Option<Instant>,
}

/// A queued wake-up; dropping it withdraws it.
pub(crate) struct Alarm(Option<(Instant, u64)>);

impl Drop for Alarm {
    fn drop(&mut self) {
        if let (Some(key), Some(Some(timer))) = (self.0, TIMER.get()) {
            timer
                .alarms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .due
                .remove(&key);
        }
    }
}

static TIMER: OnceLock<Option<Timer>> = OnceLock::new();

fn wake_at(at: Instant, waker: Waker) -> Alarm {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let timer = TIMER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("lockattr-timer".into())
            .spawn(|| run_timer(TIMER.wait().as_ref().expect("the timer exists")));
        spawned.ok().map(|_| Timer {
            alarms: Mutex::default(),
            changed: Condvar::new(),
        })
    });
    let Some(timer) = timer else {
        // No timer thread could be started: wake now, so an async waiter
        // polls again (and checks its deadline) rather than hang.
        waker.wake();
        return Alarm(None);
    };
    let key = (at, NEXT.fetch_add(1, Ordering::Relaxed));
    let mut alarms = timer.alarms.lock().unwrap_or_else(PoisonError::into_inner);
    alarms.due.insert(key, waker);
    let wake_timer = alarms.looks_at.is_none_or(|looks_at| at < looks_at);
    if wake_timer {
        alarms.looks_at = Some(at);
    }
    drop(alarms);
    if wake_timer {
        timer.changed.notify_one();
    }
    Alarm(Some(key))
}

fn run_timer(timer: &Timer) {
    let mut alarms = timer.alarms.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = Instant::now();
        if let Some(entry) = alarms
            .due
            .first_entry()
            .filter(|entry| entry.key().0 <= now)
        {
            // Wake outside the lock: a waker may take locks that a caller of
            // `wake_at` holds.
            let waker = entry.remove();
            drop(alarms);
            waker.wake();
            alarms = timer.alarms.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        alarms.looks_at = alarms.due.first_key_value().map(|(&(at, _), _)| at);
        alarms = match alarms.looks_at {
            Some(at) => {
                let woken = timer.changed.wait_timeout(alarms, at - now);
                woken.unwrap_or_else(PoisonError::into_inner).0
            }
            None => timer
                .changed
                .wait(alarms)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}
