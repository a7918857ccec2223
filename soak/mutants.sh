#!/usr/bin/env bash
# Shows that the soak catches broken copies of lockattr. Each mutant is
# applied to a scratch copy of this checkout in /tmp (never to the checkout
# itself); the soak is built there and run against it, and must fail.
#
#   soak/mutants.sh [SECS] [MUTANT...]     (default: 60 s, every mutant)
#
# Prints, per mutant, the soak's failure lines, and at the end one line per
# mutant: CAUGHT or MISSED. Exit status 1 if any mutant was missed. A mutant
# whose source line has changed is reported as not applying.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true

names=() files=() whats=() substs=()
# mutant NAME FILE WHAT SUBSTITUTION: a perl s/// applied once to FILE.
mutant() { names+=("$1"); files+=("$2"); whats+=("$3"); substs+=("$4"); }

mutant no-recheck lockattr/src/registry.rs \
  'no check after locking that the path still names the locked file' \
  's/match self\.target\.confirm\(self\.name\(\), handle\) \{/match (handle, Ok::<bool, Error>(true)).1 {/'
mutant no-unlock lockattr/src/registry.rs \
  'the last holder of a process lets go without unlocking the file' \
  's/(fn unlock\(&mut self\) \{\n\s*if let \(Some\(mode\), Some\(handle\)\) = \(self\.held\.take\(\), &mut self\.handle\) \{\n\s*)handle\.unlock\(mode\);/$1let _ = (handle, mode);/'
mutant panic-keeps lockattr/src/lock.rs \
  'a hold is not released when its function panics' \
  's/(impl Drop for Hold \{\n\s*fn drop\(&mut self\) \{)/$1\n        if std::thread::panicking() { return; }/'
mutant exclusive-joins-shared lockattr/src/registry.rs \
  'an exclusive request of another thread joins a shared hold' \
  's/if st\.mode == Some\(LockMode::Shared\) && mode == LockMode::Shared \{/if st.mode == Some(LockMode::Shared) {/'
mutant busy-is-success lockattr/src/registry.rs \
  'a try-once that finds the file locked by another process goes ahead' \
  's/OnBusy::Fail => Err\(Error::busy\(self\.about\(\), Holder::Unknown\)\),/OnBusy::Fail => { st.held = Some(mode); continue }/'
mutant early-unlock lockattr/src/registry.rs \
  'the file is unlocked when one of several shared holders of a process leaves' \
  's/(self\.holders\.swap_remove\(i\);\n\s*)if self\.holders\.is_empty\(\) \{\n\s*self\.mode = None;\n\s*return true;\n\s*\}\n\s*false/$1if self.holders.is_empty() { self.mode = None; }\n        true/'
mutant naive-open lockattr/src/file.rs \
  'the lock file is opened read-write with O_CREAT, as a hand-written lock would' \
  's/OFlags::RDONLY \| OFlags::NOFOLLOW(.*?)rustix::fs::open\(ctx\.c_path, flags, Mode::empty\(\)\)/OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW$1rustix::fs::open(ctx.c_path, flags, Mode::from_raw_mode(0o644))/s'

wanted=("$@")
scratch=$(mktemp -d /tmp/lockattr-mutants.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch" # the soak's second user runs the binary from in here
export CARGO_TARGET_DIR=$scratch/target
results=()
for i in "${!names[@]}"; do
  name=${names[$i]} file=${files[$i]} what=${whats[$i]} subst=${substs[$i]}
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then
    continue
  fi
  copy=$scratch/$name
  mkdir -p "$copy"
  (cd "$repo" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$copy"
  if ! perl -0777 -pi -e "$subst or die qq(does not apply\n)" "$copy/$file" 2>/dev/null; then
    echo "=== $name: does not apply to $file any more"
    results+=("$name: DOES NOT APPLY")
    continue
  fi
  echo "=== $name: $what ($file)"
  (cd "$copy" && diff -u <(cd "$repo" && cat "$file") "$file" | sed -n '3,$p' | grep '^[-+]' || true)
  # One target directory for all: a mutant that does not build must not
  # run the previous one's binary.
  rm -f "$CARGO_TARGET_DIR/release/lockattr-soak"
  if ! cargo build --release -q -p lockattr-soak --manifest-path "$copy/Cargo.toml" 2>"$scratch/build.log"; then
    grep -v '^warning' "$scratch/build.log" | head -20
    results+=("$name: DOES NOT BUILD")
    continue
  fi
  start=$(date +%s)
  set +e
  out=$("$CARGO_TARGET_DIR/release/lockattr-soak" --secs "$secs" --seed 1 --tmp "$scratch" 2>&1)
  status=$?
  set -e
  took=$(( $(date +%s) - start ))
  echo "$out" | sed -n '/^failures/,$p' | head -12 || true
  echo "$out" | grep -E '^(overlaps|occupancy|counter|shared bodies) |^  SOAK-ERROR' | head -12 || true
  # 1: the soak found a failure; 2 is a run that could not start.
  case $status in
    1) results+=("$name: CAUGHT (after ${took} s)") ;;
    0) results+=("$name: MISSED") ;;
    *) results+=("$name: DID NOT RUN (exit $status)") ;;
  esac
done
echo
printf '%s\n' "${results[@]}"
case " ${results[*]} " in *MISSED* | *"NOT BUILD"* | *"NOT RUN"* | *"NOT APPLY"*) exit 1 ;; esac
