//! Waiting: `wait` and `wait = "DUR"`, for threads and for async tasks.
//!
//! The kernel side (one thread blocked in flock(2) per busy lock file) lives
//! in the registry; here are the waiters' deadlines, the "still waiting"
//! notice, and the one timer thread that wakes async waiters on time without
//! an async runtime.

use crate::error::Error;
use crate::file::LockMode;
use crate::holder::HolderId;
use crate::registry::{Slot, Step};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
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

/// Counts a waiter in its slot for as long as it lives, and has the timer
/// print the "still waiting" notice if the wait lasts.
struct Waiting {
    slot: &'static Slot,
    notice: Arc<Notice>,
}

impl Waiting {
    fn new(slot: &'static Slot, label: &'static str, limit: Option<Duration>) -> Waiting {
        slot.set_waiting(true);
        let start = Instant::now();
        let notice = Arc::new(Notice {
            slot,
            label,
            limit,
            done: AtomicBool::new(false),
        });
        // A wait that ends before the notice would be due never schedules it.
        if limit.is_none_or(|limit| limit > NOTICE_AFTER) {
            wake_at(start + NOTICE_AFTER, Waker::from(Arc::clone(&notice)));
        }
        Waiting { slot, notice }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.notice.done.store(true, Ordering::Relaxed);
        // Also when cancelled: withdraw, so a lock the kernel grants later is
        // let go at once instead of being kept for nobody.
        self.slot.set_waiting(false);
    }
}

/// The one line a long wait prints, from the timer thread, so that a thread
/// blocked in flock(2) needs nobody to wake it for that.
struct Notice {
    slot: &'static Slot,
    label: &'static str,
    limit: Option<Duration>,
    done: AtomicBool,
}

impl Wake for Notice {
    fn wake(self: Arc<Self>) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let holder = self.slot.holder_now();
        let (label, path) = (self.label, self.slot.path().display());
        match self.limit {
            Some(limit) => eprintln!(
                "lockattr: waiting for lock \"{label}\" ({path}), held by {holder}; will wait up to {}",
                Human(limit)
            ),
            None => eprintln!(
                "lockattr: waiting for lock \"{label}\" ({path}), held by {holder}; waiting until it is free"
            ),
        }
    }
}

/// Takes the lock for `holder`, waiting on this thread as `wait` says.
pub(crate) fn acquire_blocking(
    slot: &'static Slot,
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
    let _waiting = Waiting::new(slot, label, limit);
    // A limit too long for `Instant` is no limit.
    let deadline = limit.and_then(|limit| Instant::now().checked_add(limit));
    slot.wait_blocking(label, mode, holder, deadline)
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
    slot: &'static Slot,
    label: &'static str,
    mode: LockMode,
    holder: HolderId,
    limit: Option<Duration>,
    /// Set on the first poll.
    started: Option<Started>,
}

struct Started {
    _waiting: Waiting,
    deadline: Option<Instant>,
    /// Whether the timer will wake us at the deadline.
    timer_set: bool,
}

impl AcquireAsync {
    pub(crate) fn new(
        slot: &'static Slot,
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
        let started = this.started.get_or_insert_with(|| Started {
            _waiting: Waiting::new(this.slot, this.label, this.limit),
            deadline: this
                .limit
                .and_then(|limit| Instant::now().checked_add(limit)),
            timer_set: false,
        });
        let outcome = match this
            .slot
            .poll_wait(this.label, this.mode, this.holder, cx.waker())
        {
            Ok(Step::Held) => Ok(()),
            Err(err) => Err(err),
            Ok(_) if started.deadline.is_some_and(|d| Instant::now() >= d) => {
                Err(this.slot.busy(this.label))
            }
            Ok(_) => {
                if let Some(deadline) = started.deadline.filter(|_| !started.timer_set) {
                    wake_at(deadline, cx.waker().clone());
                    started.timer_set = true;
                }
                return Poll::Pending;
            }
        };
        this.started = None; // withdraws from the wait
        Poll::Ready(outcome)
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
        let mut due = Vec::new();
        while queue.peek().is_some_and(|alarm| alarm.0 <= now) {
            due.push(queue.pop().expect("peeked").1);
        }
        if !due.is_empty() {
            // Wake outside the lock: a waker may take locks that a caller of
            // `wake_at` holds.
            drop(queue);
            due.into_iter().for_each(Waker::wake);
            queue = timer.queue.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
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
