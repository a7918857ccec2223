#!/usr/bin/env bash
# The pipeline example (examples/pipeline.rs) on two "runners" that share
# one PostgreSQL server: `build` on runner-a, then `deploy` on runner-b is
# refused (exit 75) and `deploy-when-free` waits for the build. The
# runners and the server are network namespaces on this machine, each
# runner with a host name of its own; the server is a throw-away cluster
# (tests/pg/cluster). As root, with iproute2 and PostgreSQL installed:
#
#   bash examples/hosts.sh
#
# Everything it makes is removed when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

id=lockattr-demo-$$
dir=$(mktemp -d "/tmp/$id.XXXXXX")
chmod 755 "$dir" # the server runs as `postgres`
cleanup() {
  tests/pg/cluster stop "$dir/db" 2>/dev/null || true
  rm -rf "$dir"
  for ns in "$id-db" "$id-a" "$id-b"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

cargo build -q --example pipeline # the root package builds lockattr with `postgres`
pipeline=$PWD/target/debug/examples/pipeline

# A server and two runners, each runner on a link of its own to the server.
for ns in db a b; do
  ip netns add "$id-$ns"
  ip -n "$id-$ns" link set lo up
done
link() { # RUNNER SERVER_ADDRESS RUNNER_ADDRESS
  ip link add "to-$1" netns "$id-db" type veth peer name eth0 netns "$id-$1"
  ip -n "$id-db" addr add "$2/30" dev "to-$1"
  ip -n "$id-$1" addr add "$3/30" dev eth0
  ip -n "$id-db" link set "to-$1" up
  ip -n "$id-$1" link set eth0 up
}
link a 10.77.0.1 10.77.0.2
link b 10.77.0.5 10.77.0.6
tests/pg/cluster start "$dir/db" 5432 10.77.0.1,10.77.0.5 "$id-db"

# `on RUNNER CMD...`: CMD on that runner, locking on the server.
on() {
  local runner=$1 server
  shift
  server=$(tests/pg/cluster url "$dir/db" "$([ "$runner" = a ] && echo 10.77.0.1 || echo 10.77.0.5)")
  ip netns exec "$id-$runner" unshare --uts -- sh -c 'hostname "runner-$0" && exec "$@"' "$runner" \
    env LOCKATTR_URL="$server" "$@"
}

echo "== runner-a: pipeline build (3 s)"
on a "$pipeline" build > >(tee "$dir/build.out") &
# It holds the lock once it says it compiles.
for _ in $(seq 100); do
  grep -q compiling "$dir/build.out" 2>/dev/null && break
  sleep 0.1
done
echo "== runner-b: pipeline deploy, while runner-a builds"
status=0
on b "$pipeline" deploy || status=$?
echo "== runner-b: deploy exited with $status (75: busy)"
[ "$status" = 75 ] || { echo "hosts.sh: expected 75 from deploy on runner-b" >&2; exit 1; }
echo "== runner-b: pipeline deploy-when-free"
on b "$pipeline" deploy-when-free
wait
