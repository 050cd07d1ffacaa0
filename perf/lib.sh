# perf/lib.sh: the shell pieces perf/bench.sh and perf/flamegraph.sh share. Sourced, not run.
#
# Before sourcing, set BIN (the directory of the built binaries) and work (a scratch directory
# this file's cleanup removes). Every process started with `start` is killed on exit.

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# start LOG CMD...: runs CMD in the background and waits for its "serving" line.
start() {
    local log=$1; shift
    "$@" > "$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 400); do
        grep -q serving "$log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$(basename "$0"): $* did not start:" >&2; tail "$log" >&2; exit 1
}
# field LOG NAME: the value of NAME=... in LOG's first line that has it.
field() { grep -o "$2=[0-9.:]*" "$1" | head -n 1 | sed "s/^$2=//"; }
port_of() { field "$1" addr | sed 's/.*://'; }

# services STORE: starts lars-dns and lars-reporter on STORE (ports from the OS); sets DNS, REP.
services() {
    local store=$1
    # Port 0 for the metrics endpoints too, so a bench never collides with a running Lars.
    printf '[reactor]\nport = 0\n[metrics]\naddr = "127.0.0.1:0"\n' > "$work/svc.toml"
    start "$work/dns.log" "$BIN/lars-dns" --config "$work/svc.toml" --store "$store"
    start "$work/rep.log" "$BIN/lars-reporter" --config "$work/svc.toml" --store "$store"
    DNS=$(port_of "$work/dns.log"); REP=$(port_of "$work/rep.log")
}

# ten_routes STORE: routes (1, 1..10), two hosts each, then one dns version poll.
ten_routes() {
    for c in $(seq 1 10); do
        "$BIN/lars" route add 1 "$c" 10.0.0.1 9001 --store "$1" > /dev/null
        "$BIN/lars" route add 1 "$c" 10.0.0.2 9002 --store "$1" > /dev/null
    done
    sleep 1.2
}

# agent LOG PREFIX...: starts lars-agent under PREFIX (e.g. taskset -c 1) against $DNS and $REP,
# with extra [agent] lines from $AGENT_EXTRA and the runtime from $AGENT_IO; sets APID, BP, STATS.
agent() {
    local log=$1; shift
    {
        printf '[agent]\nbase_port = 0\nstats_addr = "127.0.0.1:0"\n%s\n' "${AGENT_EXTRA:-}"
        [ -n "${AGENT_IO:-}" ] && printf 'io = "%s"\n' "$AGENT_IO"
        printf '[dnsserver]\nip = "127.0.0.1"\nport = %s\n[reporter]\nip = "127.0.0.1"\nport = %s\n' "$DNS" "$REP"
    } > "$work/agent.toml"
    start "$log" "$@" "$BIN/lars-agent" --config "$work/agent.toml" --state-dir "$work"
    APID=${pids[-1]}
    BP=$(field "$log" base_port); STATS=$(field "$log" stats)
}

# hosts_held: hosts the running agent holds, from its stats endpoint.
hosts_held() { "$BIN/lars" agent-stats --addr "$STATS" --raw | awk '/^lars_agent_hosts\{/ {s += $2} END {print s + 0}'; }

# ask_ten_routes: asks the agent for routes (1, 1..10) until it holds their 20 hosts.
ask_ten_routes() {
    for c in $(seq 1 10); do "$BIN/lars" --base-port "$BP" gethost 1 "$c" > /dev/null 2>&1 || true; done
    for _ in $(seq 1 100); do [ "$(hosts_held)" -ge 20 ] && return 0; sleep 0.05; done
}
