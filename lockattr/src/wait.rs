//! Waiting: `wait` and `wait = "DUR"`, for threads and for async tasks.
//!
//! The kernel side (a thread blocked in flock(2): the waiter itself for an
//! untimed sync wait, else one helper per busy lock file) lives in the
//! registry; here are the waiters' deadlines, the "still waiting" notice, and
//! the one timer thread that wakes async waiters and prints notices on time
//! without an async runtime.

use crate::error::Error;
use crate::file::LockMode;
use crate::holder::HolderId;
use crate::registry::{Slot, Step};
use crate::report;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Counts a waiter in its slot for as long as it lives, and, once the wait
/// really has to wait, has the timer print the "still waiting" notice if it
/// lasts. An uncontended `wait` call never gets that far, so it allocates
/// nothing and queues no alarm.
struct Waiting {
    slot: &'static Slot,
    limit: Option<Duration>,
    start: Instant,
    notice: Option<(Arc<Notice>, Alarm)>,
}

impl Waiting {
    fn new(slot: &'static Slot, limit: Option<Duration>) -> Waiting {
        slot.set_waiting(true);
        let start = Instant::now();
        Waiting {
            slot,
            limit,
            start,
            notice: None,
        }
    }

    /// Schedules the notice, once. A wait that must end before the notice
    /// would be due never schedules it.
    fn arm(&mut self) {
        if self.notice.is_some() || self.limit.is_some_and(|limit| limit <= NOTICE_AFTER) {
            return;
        }
        let (slot, limit) = (self.slot, self.limit);
        let notice = Arc::new(Notice {
            slot,
            limit,
            done: AtomicBool::new(false),
        });
        let alarm = wake_at(self.start + NOTICE_AFTER, Waker::from(Arc::clone(&notice)));
        self.notice = Some((notice, alarm));
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some((notice, _)) = &self.notice {
            notice.done.store(true, Ordering::Relaxed);
        }
        // Also when cancelled: withdraw, so a lock the kernel grants later is
        // let go at once instead of being kept for nobody.
        self.slot.set_waiting(false);
    }
}

/// The one line a long wait prints, from the timer thread, so that a thread
/// blocked in flock(2) needs nobody to wake it for that.
struct Notice {
    slot: &'static Slot,
    limit: Option<Duration>,
    done: AtomicBool,
}

impl Wake for Notice {
    fn wake(self: Arc<Self>) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let holder = self.slot.holder_now();
        let what = crate::error::describe(self.slot.about());
        let until = match self.limit {
            Some(limit) => format!("will wait up to {}", Human(limit)),
            None => "waiting until it is free".to_owned(),
        };
        report::waiting(&what, &holder, &until);
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
    slot.wait_blocking(mode, holder, deadline, &mut || waiting.arm())
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
    mode: LockMode,
    holder: HolderId,
    limit: Option<Duration>,
    /// Set on the first poll.
    started: Option<Started>,
}

struct Started {
    waiting: Waiting,
    deadline: Option<Instant>,
    /// The timer's wake-up at the deadline, once asked for.
    alarm: Option<Alarm>,
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
        let started = this.started.get_or_insert_with(|| Started {
            waiting: Waiting::new(this.slot, this.limit),
            deadline: this
                .limit
                .and_then(|limit| Instant::now().checked_add(limit)),
            alarm: None,
        });
        let deadline = started.deadline;
        let outcome = match this
            .slot
            .poll_wait(this.mode, this.holder, deadline, cx.waker())
        {
            Ok(Step::Held) => Ok(()),
            Err(err) => Err(err),
            Ok(_) if started.deadline.is_some_and(|d| Instant::now() >= d) => Err(this.slot.busy()),
            Ok(_) => {
                started.waiting.arm();
                if let Some(deadline) = started.deadline.filter(|_| started.alarm.is_none()) {
                    started.alarm = Some(wake_at(deadline, cx.waker().clone()));
                }
                return Poll::Pending;
            }
        };
        this.started = None; // withdraws from the wait
        Poll::Ready(outcome)
    }
}

/// The timer thread: wakes async waiters at their deadlines and prints the
/// long-wait notice, so waiting needs no async runtime. One thread for the
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
