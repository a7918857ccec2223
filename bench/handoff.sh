#!/usr/bin/env bash
# Hand-off latency (issue 3): from a holder's release to the waiter running
# in another process, for #[exclusive(.., wait)] and wait = "30s" against
# `flock(1) -w` and Python's filelock, measured in one run (see the header
# of bench/benches/handoff.rs for the method and its biases).
#
# Installs filelock from PyPI (`pip install filelock`) if python3 cannot
# import it; flock(1) comes with util-linux.
#
#   bash bench/handoff.sh                 # 300 rounds per waiter, about 1 min
#   bash bench/handoff.sh --rounds 1000
#   bash bench/handoff.sh --quick         # 30 rounds
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! python3 -c 'import filelock' 2>/dev/null; then
    echo "installing filelock from PyPI" >&2
    python3 -m pip install --quiet filelock
fi
command -v flock >/dev/null || echo "flock(1) is missing (util-linux): its rows are skipped" >&2

cargo bench -p lockattr-bench --bench handoff -- "$@"
