#!/usr/bin/env bash
# Build cost of #[exclusive] (issue 4): cold `cargo build` of three hello-world
# crates made in a temp dir -- plain, with #[lockattr::exclusive] (a path
# dependency on this checkout's lockattr/), and with proc-lock's
# #[proc_lock(name = "...")] -- each with its own CARGO_TARGET_DIR, after
# `cargo fetch`, so downloads do not count. Each build is repeated ROUNDS
# times (default 3), the three interleaved in every round; the best time of
# each is reported with its ratio to plain. Then the syn features that
# lockattr-macros turns on.
#
#   bash bench/build-cost.sh            # ROUNDS=1 for a quick run
#   PROFILE=release bash bench/build-cost.sh
set -euo pipefail

rounds=${ROUNDS:-3}
profile=${PROFILE:-dev}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lockattr-build-cost.XXXXXX")
trap 'rm -rf "$work"' EXIT

make_crate() { # name, extra [dependencies] line, main.rs
    mkdir -p "$work/$1/src"
    cat >"$work/$1/Cargo.toml" <<EOF
[package]
name = "hello-$1"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
$2

[workspace]
EOF
    printf '%s\n' "$3" >"$work/$1/src/main.rs"
}

make_crate plain "" 'fn main() {
    println!("hello");
}'

make_crate lockattr "lockattr = { path = \"$root/lockattr\" }" '#[lockattr::exclusive("build-cost-hello")]
fn hello() {
    println!("hello");
}

fn main() {
    hello();
}'

make_crate proc-lock 'proc-lock = "0.4"' 'use proc_lock::proc_lock;

#[proc_lock(name = "build-cost-hello.lock")]
fn hello() {
    println!("hello");
}

fn main() {
    hello();
}'

crates=(plain lockattr proc-lock)
for c in "${crates[@]}"; do
    (cd "$work/$c" && cargo fetch --quiet)
done

now() { date +%s.%N; }
declare -A best units
for ((r = 1; r <= rounds; r++)); do
    for c in "${crates[@]}"; do
        target="$work/target-$c"
        rm -rf "$target"
        start=$(now)
        log=$(cd "$work/$c" && CARGO_TARGET_DIR="$target" cargo build --offline --profile "$profile" 2>&1) || {
            echo "$log" >&2
            exit 1
        }
        secs=$(echo "$(now) - $start" | bc -l)
        units[$c]=$(grep -c '^ *Compiling ' <<<"$log" || true)
        if [[ -z ${best[$c]:-} ]] || (($(echo "$secs < ${best[$c]}" | bc -l))); then
            best[$c]=$secs
        fi
        printf 'round %d  %-10s %6.2f s\n' "$r" "$c" "$secs" >&2
    done
done

echo
echo "Cold \`cargo build --profile $profile\` of a hello world, best of $rounds (interleaved), $(nproc) CPUs, $(rustc -V)"
echo
echo "| crate | crates compiled | seconds | ratio to plain | ratio to proc-lock |"
echo "|---|---:|---:|---:|---:|"
for c in "${crates[@]}"; do
    printf '| %s | %s | %.2f | %.2fx | %.2fx |\n' "$c" "${units[$c]}" "${best[$c]}" \
        "$(echo "${best[$c]} / ${best[plain]}" | bc -l)" \
        "$(echo "${best[$c]} / ${best[proc-lock]}" | bc -l)"
done
echo
echo "What each pulls in:"
for c in lockattr proc-lock; do
    echo "  $c: $(cd "$work/$c" && cargo tree --offline --prefix none -e normal,build --no-dedupe 2>/dev/null |
        sed 1d | awk '{print $1 " " $2}' | sort -u | tr '\n' ',' | sed 's/,$//; s/,/, /g')"
done
echo
echo "syn features enabled for lockattr-macros (cargo tree -p lockattr-macros -e features):"
(cd "$root" && cargo tree --offline -p lockattr-macros -e features --prefix none 2>/dev/null |
    grep -E '^syn (feature|v[0-9.]+$)' | sort -u | sed 's/^/  /')
