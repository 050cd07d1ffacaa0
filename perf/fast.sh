#!/usr/bin/env bash
# perf/fast.sh: the callers' fast path (lars-wire's FastClient) against the classic path, in one
# run on one agent: the qps preset at 1, 2 and 10 threads (it/s, caller CPU and agent CPU per
# iteration), and the health convergence time of each (perf/src/bin/convergence.rs: a host fails
# every call until it is out of the rotation, then succeeds until it is back). Prints a markdown
# table for perf/RESULTS.md. THREADS (default "1 2 10") and DURATION (seconds, default 5) may be
# set. Needs: cargo, python3.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$top/target/release"
DURATION=${DURATION:-5}
WARMUP=1
THREADS=${THREADS:-1 2 10}
work=$(mktemp -d /tmp/lars-fast.XXXXXX)
# shellcheck source=perf/lib.sh
. "$top/perf/lib.sh"

echo "==> building release binaries" >&2
(cd "$top" && cargo build -q --release -p lars-dns -p lars-reporter -p lars-agent -p lars-tools -p lars-bench --bins)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
store="sqlite://$work/lars.db"

echo "==> services, 10 routes x 2 hosts and a route of 3 hosts for convergence" >&2
services "$store"
ten_routes "$store"
for i in 1 2 3; do "$BIN/lars" route add 2 1 10.0.1.$i 9000 --store "$store" > /dev/null; done
sleep 1.2
agent "$work/agent.log"
ask_ten_routes

rows=""
for threads in $THREADS; do
    for client in classic fast; do
        echo "==> qps preset, $threads thread(s), --client $client" >&2
        out="$work/qps-$client-$threads.json"
        t0=$(ticks "$APID")
        "$BIN/lars-perf" --client "$client" --base-port "$BP" --workload qps --threads "$threads" \
            --keys "$threads" --duration "$DURATION" --warmup "$WARMUP" --json > "$out" || true
        t1=$(ticks "$APID")
        rows+=$(python3 -c "
import json; d=json.load(open('$out'))
its = d.get('iterations_per_sec', d.get('throughput_per_sec', 0))
total = its * (d['measured_secs'] + $WARMUP)
agent = ($t1 - $t0) * 1e6 / $hz / total if total else float('nan')
caller = d.get('caller_cpu_us_per_iteration')
caller = '%.3f' % caller if caller is not None else 'n/a'
print('| qps, %s thread(s) | %s | %.0f it/s | %s | %.4f |' % ($threads, '$client', its, caller, agent))
")$'\n'
    done
done

conv=""
for client in classic fast; do
    echo "==> convergence, --client $client" >&2
    conv+="| $client | $("$BIN/convergence" --base-port "$BP" --modid 2 --cmdid 1 --client "$client" --json | python3 -c "
import json,sys; d=json.load(sys.stdin)
print('%d calls, %.2f ms | %d calls, %.2f ms |' % (d['out_calls'], d['out_ms'], d['back_calls'], d['back_ms']))")"$'\n'
done

commit=$(cd "$top" && git rev-parse --short HEAD)
cat <<TABLE
Measured $(date -u +%Y-%m-%d) on $(nproc) cores, commit $commit, release build, ${DURATION} s per run after ${WARMUP} s of warm-up (agent CPU counts the warm-up).

| run | client | throughput | caller CPU µs/it (whole process) | agent CPU µs/it |
|---|---|---|---|---|
${rows}
| client | failing host out of the rotation | recovered host back in it |
|---|---|---|
${conv}
TABLE
