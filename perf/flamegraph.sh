#!/usr/bin/env bash
# perf/flamegraph.sh: a flamegraph of lars-agent under get_host load.
#
#   bash perf/flamegraph.sh [SECONDS]      # default 10; writes perf/flamegraph.svg
#
# Builds the `profiling` profile (release code with debug info and frame pointers), starts
# lars-dns, lars-reporter and lars-agent (pinned to CPU 1) on a fresh embedded store with 10
# routes, loads the agent with lars-perf from CPU 0, records it with `perf record -g` (the
# cpu-clock event, which works in VMs without hardware counters) and folds the stacks with
# inferno (installed with `cargo install inferno` when missing). Needs linux-perf (`perf`).
# Shell helpers shared with bench.sh are in perf/lib.sh.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-10}
BIN="$top/target/profiling"
out="$top/perf/flamegraph.svg"
work=$(mktemp -d /tmp/lars-flame.XXXXXX)
# shellcheck source=perf/lib.sh
. "$top/perf/lib.sh"

command -v perf > /dev/null || { echo "flamegraph: linux-perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph > /dev/null; then
    echo "==> installing inferno" >&2
    cargo install --locked inferno
fi

echo "==> building the profiling profile" >&2
(cd "$top" && cargo build -q --profile profiling -p lars-dns -p lars-reporter -p lars-agent -p lars-tools --bins)

store="sqlite://$work/lars.db"
services "$store"
ten_routes "$store"
agent "$work/agent.log" taskset -c 1
ask_ten_routes
sleep 1

echo "==> recording $seconds s of the agent under load" >&2
"$BIN/lars-perf" --base-port "$BP" --cpus 0 --threads 1 --sockets 4 --outstanding 16 --keys 10 \
    --duration "$((seconds + 2))" --warmup 0 > "$work/load.txt" &
load=$!
sleep 1
perf record -e cpu-clock -F 999 -g -p "$APID" -o "$work/perf.data" -- sleep "$seconds" 2> /dev/null
wait "$load" || true
perf script -i "$work/perf.data" 2> /dev/null | inferno-collapse-perf | inferno-flamegraph \
    --title "lars-agent, get_host under lars-perf load" > "$out"
echo "==> $out" >&2
grep -E 'throughput|latency' "$work/load.txt" >&2 || true
