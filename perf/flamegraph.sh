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
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-10}
P="$top/target/profiling"
out="$top/perf/flamegraph.svg"
work=$(mktemp -d /tmp/lars-flame.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v perf > /dev/null || { echo "flamegraph: linux-perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph > /dev/null; then
    echo "==> installing inferno" >&2
    cargo install --locked inferno
fi

echo "==> building the profiling profile" >&2
(cd "$top" && cargo build -q --profile profiling -p lars-dns -p lars-reporter -p lars-agent -p lars-tools --bins)

start() {
    local log=$1; shift
    "$@" > "$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 400); do
        grep -q serving "$log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "flamegraph: $* did not start" >&2; tail "$log" >&2; exit 1
}
field() { grep -o "$2=[0-9.:]*" "$1" | head -n 1 | sed "s/^$2=//"; }

store="sqlite://$work/lars.db"
printf '[reactor]\nport = 0\n' > "$work/svc.toml"
start "$work/dns.log" "$P/lars-dns" --config "$work/svc.toml" --store "$store"
start "$work/rep.log" "$P/lars-reporter" --config "$work/svc.toml" --store "$store"
for c in $(seq 1 10); do
    "$P/lars" route add 1 "$c" 10.0.0.1 9001 --store "$store" > /dev/null
    "$P/lars" route add 1 "$c" 10.0.0.2 9002 --store "$store" > /dev/null
done
sleep 1.2
printf '[agent]\nbase_port = 0\nstats_addr = ""\n[dnsserver]\nip = "127.0.0.1"\nport = %s\n[reporter]\nip = "127.0.0.1"\nport = %s\n' \
    "$(field "$work/dns.log" addr | sed 's/.*://')" "$(field "$work/rep.log" addr | sed 's/.*://')" > "$work/agent.toml"
start "$work/agent.log" taskset -c 1 "$P/lars-agent" --config "$work/agent.toml"
agent=${pids[-1]}
bp=$(field "$work/agent.log" base_port)
for c in $(seq 1 10); do "$P/lars" --base-port "$bp" gethost 1 "$c" > /dev/null 2>&1 || true; done
sleep 1

echo "==> recording $seconds s of the agent under load" >&2
"$P/lars-perf" --base-port "$bp" --cpus 0 --threads 1 --sockets 4 --outstanding 16 --keys 10 \
    --duration "$((seconds + 2))" --warmup 0 > "$work/load.txt" &
load=$!
sleep 1
perf record -e cpu-clock -F 999 -g -p "$agent" -o "$work/perf.data" -- sleep "$seconds" 2> /dev/null
wait "$load" || true
perf script -i "$work/perf.data" 2> /dev/null | inferno-collapse-perf | inferno-flamegraph \
    --title "lars-agent, get_host under lars-perf load" > "$out"
echo "==> $out" >&2
grep -E 'throughput|latency' "$work/load.txt" >&2 || true
