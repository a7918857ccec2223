//! flock(1) participants: a shell script that takes the lock the way the
//! README tells scripts to (`lock=$(tool lock-path)`, then `flock` on a
//! read-only descriptor of its own, `9<`), and runs as its body this binary's
//! `flock-body` helper, which does every check a worker's body does.

use crate::body::{Ctx, Lane, Probe, pause};
use crate::journal::Exit;
use crate::plan::Plan;
use crate::rng::Rng;
use crate::way::Way;
use std::path::Path;

/// The script, run as `sh -c SCRIPT sh SELF RUN DIR SLOT INC SEED UMASK
/// CHECK LETTERS`. Each letter is one attempt (see `Way::flock_letter`);
/// each attempt appends `LETTER STATUS` to `RUN/flock-outcomes`.
///
/// With CHECK=1, after `flock` the script makes sure that the path still
/// names the file it locked (`[ /dev/fd/9 -ef "$lock" ]`), as lockattr does
/// after every lock, and lets go (status 76) if not. Without it (the
/// README's recipe as written, `--naive-flock`) a script that opened the
/// file just before the chaos loop removed it, and got the lock after, runs
/// beside the holder of the new file.
pub const SCRIPT: &str = r#"
self=$1 run=$2 dir=$3 slot=$4 inc=$5 seed=$6 mask=$7 check=$8 letters=$9
umask "$mask"
i=0
for letter in $letters; do
  i=$((i + 1))
  if ! lock=$("$self" lock-path "$dir"); then
    echo "$letter lock-path" >>"$run/flock-outcomes"
    continue
  fi
  case $letter in
    n) opt="-n" ;;
    w) opt="-w 0.3" ;;
    s) opt="-s -w 0.5" ;;
    *) opt="" ;;
  esac
  (
    flock $opt 9 || exit 75
    if [ "$check" = 1 ] && ! [ /dev/fd/9 -ef "$lock" ]; then exit 76; fi
    exec "$self" flock-body "$run" "$slot" "$inc" "$i" "$letter" "$seed"
  ) 9<"$lock"
  echo "$letter $?" >>"$run/flock-outcomes"
done
"#;

/// `lock-path DIR`: what a tool prints for its scripts.
pub fn lock_path_main(dir: &Path) -> i32 {
    if let Err(err) = lockattr::set_default_dir(dir) {
        eprintln!("lockattr-soak lock-path: {err}");
        return 1;
    }
    match lockattr::lock_path(crate::ways::SOAK.as_str()) {
        Ok(path) => {
            println!("{}", path.display());
            0
        }
        Err(err) => {
            eprintln!("lockattr-soak lock-path: {err}");
            1
        }
    }
}

/// `flock-body RUN SLOT INC ITER LETTER SEED`: one body, holding the lock
/// that the script took on descriptor 9.
pub fn body_main(run: &Path, slot: usize, inc: u32, iter: u64, letter: char, seed: u64) -> i32 {
    let Some(way) = Way::from_flock_letter(letter) else {
        eprintln!("lockattr-soak flock-body: unknown letter {letter:?}");
        return 2;
    };
    let ctx: &'static Ctx = Box::leak(Box::new(Ctx::new(run, Probe::Fd(9), slot, inc, iter)));
    let lane = Lane::new(ctx, 0);
    let mut rng = Rng::derive(seed, &[slot as u64, u64::from(inc), iter]);
    let plan = Plan::random(&mut rng, way.exclusive(), false);
    lane.calling();
    {
        let mut body = lane.enter(way);
        pause(plan.before);
        if body.exclusive() {
            body.read_modify_write(plan.gap);
        }
        pause(plan.after);
        body.leaving(Exit::Normal);
    }
    lane.returned();
    0
}

/// The letters of one script: `count` attempts drawn at random.
pub fn letters(rng: &mut Rng, count: usize) -> String {
    let ways = [
        (3, Way::FlockTry),
        (3, Way::FlockWaitFor),
        (2, Way::FlockWait),
        (3, Way::FlockShared),
    ];
    (0..count)
        .map(|_| {
            rng.weighted(&ways)
                .flock_letter()
                .expect("a flock(1) way")
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
