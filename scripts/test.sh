#!/usr/bin/env bash
# The test command of Lars in Rust; CI runs it through `.ci/run`.
#
#   scripts/test.sh [EXTRA NEXTEST ARGS...]      e.g. scripts/test.sh -E 'test(route)'
#
# 1. A MySQL-compatible server for the tests: $LARS_TEST_MYSQL_URL if set, else
#    mysql://root@127.0.0.1:3306. Whether it answers is asked of the store's own URL parser and
#    driver (store/examples/mysql_probe.rs). If nothing answers (or the default URL is refused),
#    a private throw-away mariadbd is started on a free port in a temporary directory, after
#    installing Debian's mariadb-server when it is missing and we run as root; it is stopped and
#    deleted at exit. LARS_TEST_MYSQL_URL is exported for the tests, which fail without it.
#    Debian's chromium and chromium-driver (the console's browser test) are installed the same
#    way, as root, when missing.
# 2. cargo fmt --check, clippy -D warnings, nextest (profile `ci`, see .config/nextest.toml),
#    doc tests, cargo doc -D warnings; each step timed, stopping at the first failure.
#
# Environment: LARS_TEST_MYSQL_URL (mysql://user[:password]@host[:port]);
#   LARS_TEST_ONLY_DB=1 stops after step 1 and prints the URL (a private server is stopped again);
#   LARS_TEST_MYSQL_START_TIMEOUT seconds a private server may take to answer (default 60).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*"; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}
now() { local t=${EPOCHREALTIME:-$(date +%s)}; printf '%s' "${t/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Everything started or created here is undone by one EXIT trap.
PRIVATE_PIDS=() PRIVATE_DIRS=() SUMMARY=() POLICY_RC_D='' START=$(now)
on_exit() {
    local status=$? pid i
    set +e
    [[ -n $POLICY_RC_D ]] && rm -f -- "$POLICY_RC_D"
    for pid in "${PRIVATE_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        log "stopping the private MariaDB server (pid $pid)"
        for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for dir in "${PRIVATE_DIRS[@]}"; do rm -rf -- "$dir"; done
    ((${#SUMMARY[@]})) && printf '\n==> Summary\n' && printf '    %s\n' "${SUMMARY[@]}" "total: $(since "$START")s"
    ((status == 0)) && log "done" || log "FAILED (exit status $status)"
    exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# probe URL: prints the probe's one line; returns 0 answers, 2 nothing listens, 3 refused,
# 4 bad URL (see store/examples/mysql_probe.rs).
probe() { LARS_TEST_MYSQL_URL=$1 "${CARGO_TARGET_DIR:-target}/debug/examples/mysql_probe"; }

# Debian/Ubuntu, as root: install mariadb-server without starting its system service (a
# policy-rc.d saying "no" is honoured by invoke-rc.d and deb-systemd-invoke).
install_mariadb_server() {
    [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null ||
        die "MariaDB is not installed; install mariadb-server (or set LARS_TEST_MYSQL_URL) and rerun"
    log "MariaDB is not installed; installing Debian's mariadb-server"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        POLICY_RC_D=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC_D" && chmod 755 "$POLICY_RC_D"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server
}

# The console's browser test drives Debian's chromium through chromium-driver. As root, both are
# installed when missing; otherwise a missing one fails that test loudly (it never skips).
ensure_chromium() {
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "chromium or chromium-driver is missing; installing Debian's (for the console's browser test)"
        DEBIAN_FRONTEND=noninteractive apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
    else
        log "WARNING: chromium or chromium-driver is missing and this is not root; the console's browser test will fail"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# start_private_mariadb [EXTRA MARIADBD ARGS...]: starts a throw-away mariadbd on a free port of
# 127.0.0.1 (root, empty password, data in a temporary directory), waits until it answers and
# sets PRIVATE_URL. The EXIT trap stops it and deletes its directory; so does a watchdog, should
# this script be killed without running the trap.
start_private_mariadb() {
    local mariadbd dir port user=() deadline timeout=${LARS_TEST_MYSQL_START_TIMEOUT:-60}
    [[ $timeout =~ ^[0-9]+$ ]] || die "LARS_TEST_MYSQL_START_TIMEOUT must be a number of seconds"
    PATH=$PATH:/usr/sbin:/usr/local/sbin
    command -v mariadbd >/dev/null || install_mariadb_server
    mariadbd=$(command -v mariadbd) || die "no mariadbd found after installing mariadb-server"
    [[ $(id -u) == 0 ]] && user=(--user=root) # mariadbd refuses to run as root unless told to
    # The socket path must stay short (108 bytes), hence /tmp rather than a long $TMPDIR.
    dir=$(mktemp -d /tmp/lars-mysql.XXXXXX) && PRIVATE_DIRS+=("$dir")
    port=$(free_port)
    log "starting a private MariaDB server on 127.0.0.1:$port, data in $dir"
    # `normal` authentication gives root@localhost an empty password usable over TCP.
    mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve "${user[@]}" >"$dir/install-db.log" 2>&1 ||
        { tail -n 30 "$dir/install-db.log" >&2; die "mariadb-install-db failed (log above)"; }
    # --no-defaults keeps /etc/mysql out; durability is traded for speed, the data is thrown away.
    "$mariadbd" --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
        --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --tmpdir="$dir" --skip-log-bin \
        --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-flush-log-at-trx-commit=0 --max-connections=500 "${user[@]}" "$@" \
        </dev/null >"$dir/mysqld.log" 2>&1 &
    local pid=$! script=$$
    PRIVATE_PIDS+=("$pid")
    (
        trap '' INT TERM HUP
        while kill -0 "$script" 2>/dev/null; do sleep 2; done
        kill -TERM "$pid" 2>/dev/null || exit 0
        for _ in {1..30}; do kill -0 "$pid" 2>/dev/null && sleep 1; done
        kill -KILL "$pid" 2>/dev/null
        rm -rf -- "$dir"
    ) </dev/null >/dev/null 2>&1 &
    PRIVATE_URL="mysql://root@127.0.0.1:$port"
    deadline=$((SECONDS + timeout))
    until probe "$PRIVATE_URL" >/dev/null; do
        if ((SECONDS > deadline)) || ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$dir/mysqld.log" >&2
            die "the private MariaDB server did not answer within ${timeout}s (log above)"
        fi
        sleep 0.25
    done
    log "private MariaDB server is up (pid $pid): $(probe "$PRIVATE_URL")"
}

ensure_mysql() {
    local origin='from LARS_TEST_MYSQL_URL' line status=0
    if [[ -z ${LARS_TEST_MYSQL_URL:-} ]]; then
        origin='the default' LARS_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306
    fi
    log "building the MySQL probe"
    cargo build -q --locked -p lars-store --example mysql_probe
    line=$(probe "$LARS_TEST_MYSQL_URL") || status=$?
    log "MySQL for the tests ($origin): $line"
    # An explicit URL that is refused is a configuration error; the default one is typically a
    # distribution's server whose root logs in only through its socket: leave it alone.
    [[ $status == 3 && $origin != 'the default' ]] && die "LARS_TEST_MYSQL_URL is refused; fix or unset it"
    case $status in
        0) return 0 ;;
        2 | 3) start_private_mariadb ;;
        *) die "$line" ;;
    esac
    LARS_TEST_MYSQL_URL=$PRIVATE_URL
}

# run_step NAME COMMAND...: runs, times and records one step; stops the script at its failure.
run_step() {
    local name=$1 start status=0
    shift
    printf '\n==> %s\n    $' "$name" && printf ' %q' "$@" && printf '\n'
    start=$(now)
    "$@" || status=$?
    SUMMARY+=("$( ((status == 0)) && echo 'ok    ' || echo 'FAILED') $(since "$start")s  $name")
    ((status == 0)) || exit "$status"
}

command -v cargo >/dev/null || die "cargo not found; install Rust (https://rustup.rs) and rerun"
db_start=$(now)
ensure_mysql
export LARS_TEST_MYSQL_URL
SUMMARY+=("ok     $(since "$db_start")s  MySQL server")
if [[ ${LARS_TEST_ONLY_DB:-0} == 1 ]]; then
    log "LARS_TEST_ONLY_DB=1: stopping after the MySQL step"
    printf '%s\n' "$LARS_TEST_MYSQL_URL"
    exit 0
fi
browser_start=$(now)
ensure_chromium
SUMMARY+=("ok     $(since "$browser_start")s  Chromium for the browser test")
run_step "format (cargo fmt)" cargo fmt --all -- --check
run_step "lints (cargo clippy)" cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    run_step "tests (cargo nextest)" cargo nextest run --workspace --locked --profile ci "$@"
else
    run_step "tests (cargo test; cargo-nextest is not installed)" cargo test --workspace --locked "$@"
fi
run_step "doc tests (cargo test --doc)" cargo test --workspace --doc --locked
run_step "docs (cargo doc)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
