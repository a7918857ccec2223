//! A worker process: four threads and two async tasks (lanes), each taking
//! the lock over and over in a way drawn at random, until its input closes
//! (the parent's word to stop), its deadline passes, or it is killed.

use crate::body::{Ctx, Lane, Probe, pause};
use crate::journal::{Kind, Oops, now};
use crate::plan::{BodyErr, Deliberate};
use crate::rng::Rng;
use crate::way::{Outcome, Patience, Way};
use lockattr::Lock;
use std::any::Any;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

pub const SYNC_LANES: usize = 4;
/// After a failed call: with the server down, do not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
pub const ASYNC_LANES: usize = 2;

/// What the parent tells a worker on its command line.
pub struct Args {
    pub run: PathBuf,
    pub lock_dir: PathBuf,
    pub slot: usize,
    pub inc: u32,
    pub seed: u64,
    pub umask_077: bool,
    /// `CLOCK_MONOTONIC` ns after which it stops by itself.
    pub until: u64,
    /// PostgreSQL mode: the server's URL, for `LOCKATTR_URL`.
    pub url: Option<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

fn stopping(until: u64) -> bool {
    STOP.load(SeqCst) || now() >= until
}

pub fn main(args: Args) -> i32 {
    if let Some(url) = &args.url {
        // SAFETY: the process has one thread yet, and lockattr reads the
        // variable at the first lock.
        unsafe { std::env::set_var("LOCKATTR_URL", url) };
    }
    // Die with the parent (or with runuser, whose own parent is ours).
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if args.umask_077 {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
    if let Err(err) = lockattr::set_default_dir(&args.lock_dir) {
        eprintln!("lockattr-soak worker: set_default_dir: {err}");
        return 2;
    }
    quiet_deliberate_panics();
    let probe = match args.url {
        Some(_) => Probe::Database,
        None => Probe::Path(
            args.lock_dir
                .join(format!("{}.lock", crate::ways::SOAK.as_str())),
        ),
    };
    let ctx: &'static Ctx = Box::leak(Box::new(Ctx::new(&args.run, probe, args.slot, args.inc, 0)));
    let pid = u64::from(std::process::id());
    ctx.shm.slot(args.slot).pid.store(pid, SeqCst);
    std::thread::spawn(|| {
        // End of input: the parent asks us to stop (or died).
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        STOP.store(true, SeqCst);
    });
    let lanes: Vec<&'static Lane> = (0..SYNC_LANES + ASYNC_LANES)
        .map(|index| &*Box::leak(Box::new(Lane::new(ctx, index))))
        .collect();
    let mut threads = Vec::new();
    for &lane in &lanes[..SYNC_LANES] {
        let rng = Rng::derive(
            args.seed,
            &[args.slot as u64, u64::from(args.inc), lane.index as u64],
        );
        let until = args.until;
        threads.push(std::thread::spawn(move || sync_lane(lane, rng, until)));
    }
    let async_lanes: Vec<&'static Lane> = lanes[SYNC_LANES..].to_vec();
    let (seed, slot, inc, until) = (args.seed, args.slot, args.inc, args.until);
    threads.push(std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let tasks: Vec<_> = async_lanes
                .into_iter()
                .map(|lane| {
                    let rng = Rng::derive(seed, &[slot as u64, u64::from(inc), lane.index as u64]);
                    tokio::spawn(async_lane(lane, rng, until))
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        });
    }));
    for thread in threads {
        let _ = thread.join();
    }
    0
}

/// A thread's loop: draw a way, call it, account for what came back, now
/// and then check that nothing is left locked.
fn sync_lane(lane: &'static Lane, mut rng: Rng, until: u64) {
    let ctx = lane.ctx;
    for _ in 0..10_000_000u64 {
        if stopping(until) {
            return;
        }
        let way = rng.weighted(&crate::ways::WAYS);
        ctx.gate_enter();
        lane.calling();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::ways::call(lane, way, &mut rng)
        }));
        lane.returned();
        ctx.gate_leave();
        let failed = settle(lane, way, result);
        // However the function was left (a panic too), this thread holds
        // nothing now, by lockattr's own account.
        if let Ok(true) = Lock::new(crate::ways::SOAK).still_held() {
            let mut record = ctx.record(Kind::Error, lane.index);
            record.way = way as u8;
            record.a = Oops::StillHeld as u64;
            let text = "the lock is still held by this thread after its function returned";
            report(lane, way, record, text);
        }
        if rng.chance(30) {
            ctx.leak_check();
        }
        pause(idle(&mut rng) + if failed { ERROR_PAUSE } else { Duration::ZERO });
    }
}

async fn async_lane(lane: &'static Lane, mut rng: Rng, until: u64) {
    let ctx = lane.ctx;
    for _ in 0..10_000_000u64 {
        if stopping(until) {
            return;
        }
        let way = rng.weighted(&crate::tasks::WAYS);
        let mut tries = 0;
        while !ctx.gate_try_enter() {
            tries += 1;
            assert!(
                tries < 10_000,
                "the leak check kept the gate closed for 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lane.calling();
        let result = crate::tasks::call(lane, way, &mut rng).await;
        lane.returned();
        ctx.gate_leave();
        let failed = match result {
            Ok(Some(result)) => settle(lane, way, Ok(result)),
            Ok(None) => {
                crate::tasks::cancelled(lane, way);
                false
            }
            Err(payload) => settle(lane, way, Err(payload)),
        };
        let pause = idle(&mut rng) + if failed { ERROR_PAUSE } else { Duration::ZERO };
        tokio::time::sleep(pause).await;
    }
}

/// The pause between two calls of a lane. Every process follows one tide
/// of the shared clock: 5 s of flood, in which the lock is never free and
/// waiters pile up, then 3 s of ebb, in which lanes nap and a try-once
/// often finds the lock free.
fn idle(rng: &mut Rng) -> Duration {
    let ebb = now() / 1_000_000_000 % 8 >= 5;
    match ebb {
        true => Duration::from_millis(rng.range(50, 400)),
        false => Duration::from_micros(rng.range(200, 5_000)),
    }
}

/// Accounts for one call: a body ran (the journal has it), the body's own
/// error or panic came back untouched, the lock was busy as the way allows,
/// or something failed. Returns whether it failed (with a server down, the
/// lane then pauses rather than fail a thousand times a second).
fn settle(lane: &Lane, way: Way, result: Result<Result<(), BodyErr>, Box<dyn Any + Send>>) -> bool {
    let shm = lane.ctx.shm;
    match result {
        Ok(Ok(()) | Err(BodyErr::Deliberate)) => false,
        Err(payload) if payload.is::<Deliberate>() => false,
        Ok(Err(BodyErr::Lock(err))) if err.is_busy() => match way.patience() {
            Patience::Once => {
                shm.count(way, Outcome::Busy);
                false
            }
            Patience::Bounded => {
                shm.count(way, Outcome::TimedOut);
                false
            }
            Patience::Forever | Patience::Reenters => {
                let text = format!("busy from a way that never gives up: {err}");
                failure(lane, way, &text);
                true
            }
        },
        Ok(Err(BodyErr::Lock(err))) => {
            failure(lane, way, &err.to_string());
            true
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            let mut record = lane.ctx.record(Kind::Error, lane.index);
            record.way = way as u8;
            record.a = Oops::UnexpectedPanic as u64;
            report(lane, way, record, &format!("unexpected panic: {message}"));
            true
        }
    }
}

/// A failure of a call: counted, journalled, and its message logged.
pub fn failure(lane: &Lane, way: Way, message: &str) {
    let mut record = lane.ctx.record(Kind::Error, lane.index);
    record.way = way as u8;
    record.a = Oops::LockError as u64;
    report(lane, way, record, message);
}

fn report(lane: &Lane, way: Way, record: crate::journal::Record, message: &str) {
    let ctx = lane.ctx;
    ctx.shm.count(way, Outcome::Error);
    // With a server, a lock error may be the chaos loop's doing (a restart,
    // a terminated session): the replay judges it; everything else stops
    // the run at once.
    if !(ctx.database() && record.a == Oops::LockError as u64) {
        ctx.shm.failures.fetch_add(1, SeqCst);
    }
    ctx.journal.append(&record);
    // One write(2), so that lines of several processes do not interleave.
    let line = format!(
        "SOAK-ERROR slot {} incarnation {} lane {} ({}): {message}\n",
        ctx.slot,
        ctx.inc,
        lane.index,
        way.name()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// Deliberate panics are part of the plan: keep them out of the log.
pub fn quiet_deliberate_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Deliberate>() {
            default(info);
        }
    }));
}
