#!/usr/bin/env bash
# The test command of Lars in Rust.
#
#   scripts/test.sh [EXTRA TEST-RUNNER ARGS...]
#
# This is the only set-up step a fresh machine needs; CI runs it through `.ci/run`. It
#
#   1. makes sure a MySQL-compatible server is reachable for the tests:
#        - it uses $LARS_TEST_MYSQL_URL if set, else mysql://root@127.0.0.1:3306;
#        - if nothing answers there, it starts a private, throw-away `mariadbd` (temporary data
#          directory, free port on 127.0.0.1, root without password) that is shut down and
#          deleted when this script exits; if MariaDB is not installed and we run as root,
#          Debian's `mariadb-server` is installed first (without starting its system service);
#        - it exports LARS_TEST_MYSQL_URL for the tests. Tests that need MySQL read it and fail
#          (they do not skip) when it is missing;
#   2. runs, in this order, stopping at the first failure:
#        cargo fmt --all -- --check
#        cargo clippy --workspace --all-targets -- -D warnings
#        cargo nextest run --workspace --no-fail-fast ARGS   (or `cargo test --workspace ARGS`
#                                                             if cargo-nextest is not installed)
#        cargo test --workspace --doc                        (nextest does not run doc tests)
#        RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
#      Cargo commands get --locked when Cargo.lock is committed.
#   3. prints the time of every step and a summary, and exits non-zero on any failure.
#
# Extra arguments go to the test runner only, e.g. `scripts/test.sh -E 'test(route)'` (nextest)
# or `scripts/test.sh some_test_name` (cargo test).
#
# Environment:
#   LARS_TEST_MYSQL_URL   mysql://user[:password]@host[:port][/database] of the server to use.
#   LARS_TEST_ONLY_DB=1   Debugging aid: only do step 1, print the URL, run a query against it and
#                         exit (a private server started for this is shut down again).
#   LARS_TEST_MYSQL_START_TIMEOUT   Seconds to wait for a private server to answer (default 60).

set -euo pipefail

# Work from the repository root, wherever we are called from.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)

DEFAULT_MYSQL_URL='mysql://root@127.0.0.1:3306'

log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch, with a fraction when bash provides one (its radix follows the locale).
now() {
    local t=${EPOCHREALTIME:-$(date +%s)}
    printf '%s\n' "${t/,/.}"
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

###################################################################################################
# Clean-up: everything this script starts or creates is undone in one EXIT trap.
###################################################################################################

PRIVATE_DIR=''      # temporary directory of the private server (data, socket, log)
PRIVATE_PID=''      # pid of the private mariadbd
WATCHDOG_PID=''     # pid of the subshell that stops it should this script die without clean-up
POLICY_RC_D_TMP=''  # /usr/sbin/policy-rc.d if we created it for the apt-get install
SUMMARY=()          # one line per step, printed at exit
SCRIPT_START=$(now)
SCRIPT_PID=$$

stop_private_server() {
    if [[ -n $WATCHDOG_PID ]]; then
        kill -KILL "$WATCHDOG_PID" 2>/dev/null || true
        wait "$WATCHDOG_PID" 2>/dev/null || true
        WATCHDOG_PID=''
    fi
    if [[ -n $PRIVATE_PID ]] && kill -0 "$PRIVATE_PID" 2>/dev/null; then
        log "stopping the private MariaDB server (pid $PRIVATE_PID)"
        # SIGTERM makes mariadbd shut down cleanly; give it 30 s before SIGKILL.
        kill -TERM "$PRIVATE_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$PRIVATE_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$PRIVATE_PID" 2>/dev/null; then
            warn "mariadbd did not stop within 30 s; killing it"
            kill -KILL "$PRIVATE_PID" 2>/dev/null || true
        fi
        wait "$PRIVATE_PID" 2>/dev/null || true
    fi
    PRIVATE_PID=''
    if [[ -n $PRIVATE_DIR && -d $PRIVATE_DIR ]]; then
        rm -rf -- "$PRIVATE_DIR"
    fi
    PRIVATE_DIR=''
}

on_exit() {
    local status=$?
    set +e
    if [[ -n $POLICY_RC_D_TMP ]]; then
        rm -f -- "$POLICY_RC_D_TMP"
    fi
    stop_private_server
    if ((${#SUMMARY[@]} > 0)); then
        printf '\n==> Summary\n'
        printf '    %s\n' "${SUMMARY[@]}"
        printf '    total: %ss\n' "$(elapsed "$SCRIPT_START")"
    fi
    if ((status == 0)); then
        log "done"
    else
        log "FAILED (exit status $status)"
    fi
    exit "$status"
}
trap on_exit EXIT
# Turn signals into a normal exit so that the EXIT trap cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

###################################################################################################
# Step 1: a MySQL-compatible server.
###################################################################################################

# Parse mysql://user[:password]@host[:port][/database][?options] into DB_USER, DB_PASS, DB_HOST,
# DB_PORT and DB_NAME. User and password may be percent-encoded.
percent_decode() {
    local s=${1//\\/\\\\}
    printf '%b' "${s//%/\\x}"
}
parse_mysql_url() {
    local url=$1 rest userinfo hostport
    case $url in
        mysql://* | mariadb://*) rest=${url#*://} ;;
        *) die "LARS_TEST_MYSQL_URL must look like mysql://user[:password]@host[:port][/db], got '$url'" ;;
    esac
    rest=${rest%%\?*} # drop ?options
    DB_NAME=''
    if [[ $rest == */* ]]; then
        DB_NAME=${rest#*/}
        rest=${rest%%/*}
    fi
    DB_USER='root'
    DB_PASS=''
    if [[ $rest == *@* ]]; then
        userinfo=${rest%@*}
        hostport=${rest##*@}
        if [[ $userinfo == *:* ]]; then
            DB_USER=$(percent_decode "${userinfo%%:*}")
            DB_PASS=$(percent_decode "${userinfo#*:}")
        else
            DB_USER=$(percent_decode "$userinfo")
        fi
    else
        hostport=$rest
    fi
    DB_PORT=3306
    if [[ $hostport == \[*\]* ]]; then # [IPv6]:port
        DB_HOST=${hostport#\[}
        DB_HOST=${DB_HOST%%\]*}
        hostport=${hostport#*\]}
        [[ $hostport == :* ]] && DB_PORT=${hostport#:}
    elif [[ $hostport == *:* ]]; then
        DB_HOST=${hostport%:*}
        DB_PORT=${hostport##*:}
    else
        DB_HOST=$hostport
    fi
    [[ -n $DB_HOST ]] || die "no host in LARS_TEST_MYSQL_URL '$url'"
    [[ $DB_PORT =~ ^[0-9]+$ ]] || die "bad port '$DB_PORT' in LARS_TEST_MYSQL_URL '$url'"
}

# The URL with its password (if any) replaced by ***, for logs.
redact_url() {
    local url=$1 scheme rest userinfo
    scheme=${url%%://*}
    rest=${url#*://}
    if [[ $rest == *@* ]]; then
        userinfo=${rest%@*}
        if [[ $userinfo == *:* ]]; then
            printf '%s://%s:***@%s\n' "$scheme" "${userinfo%%:*}" "${rest##*@}"
            return 0
        fi
    fi
    printf '%s\n' "$url"
}

# The command-line client, if one is installed.
MYSQL_CLIENT=''
find_client() {
    MYSQL_CLIENT=''
    local c
    for c in mariadb mysql; do
        if command -v "$c" >/dev/null 2>&1; then
            MYSQL_CLIENT=$(command -v "$c")
            return 0
        fi
    done
    return 1
}

# run_sql HOST PORT USER PASS SQL: run SQL over TCP, print the result (tab-separated, no header).
run_sql() {
    local host=$1 port=$2 user=$3 pass=$4 sql=$5
    # --no-defaults: ignore ~/.my.cnf and /etc/mysql; --protocol=TCP: never fall back to a socket,
    # the tests connect over TCP too. The password goes through the environment, not argv.
    if [[ -n $pass ]]; then
        MYSQL_PWD=$pass "$MYSQL_CLIENT" --no-defaults --protocol=TCP --host="$host" --port="$port" \
            --user="$user" --connect-timeout=5 --batch --skip-column-names --execute="$sql"
    else
        env -u MYSQL_PWD "$MYSQL_CLIENT" --no-defaults --protocol=TCP --host="$host" --port="$port" \
            --user="$user" --connect-timeout=5 --batch --skip-column-names --execute="$sql"
    fi
}

# tcp_open HOST PORT: does anything accept a TCP connection there? (3 s timeout)
# shellcheck disable=SC2016 # $1 and $2 are expanded by the inner bash, on purpose.
tcp_open() {
    if command -v timeout >/dev/null 2>&1; then
        timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
    else
        bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
    fi
}

# probe HOST PORT USER PASS: sets PROBE to one of
#   ok        the server answered `select 1` (PROBE_INFO has its version), or - without a client -
#             something accepts TCP connections there;
#   refused   something listens there but the query failed (PROBE_INFO has the client's error);
#   nothing   nothing accepts connections there.
probe() {
    local host=$1 port=$2 user=$3 pass=$4 out
    PROBE_INFO=''
    if ! tcp_open "$host" "$port"; then
        PROBE=nothing
        return 0
    fi
    if [[ -z $MYSQL_CLIENT ]]; then
        PROBE=ok
        PROBE_INFO='accepts TCP connections (no mariadb/mysql client installed to run a query)'
        return 0
    fi
    if out=$(run_sql "$host" "$port" "$user" "$pass" 'select 1, version()' 2>/dev/null) &&
        [[ $out == 1$'\t'* ]]; then
        PROBE=ok
        PROBE_INFO="answered 'select 1'; server version ${out#1$'\t'}"
    else
        PROBE=refused
        # Run it again for the error message (kept apart from the result above).
        PROBE_INFO=$(run_sql "$host" "$port" "$user" "$pass" 'select 1' 2>&1 >/dev/null) || true
    fi
}

# answers PORT: does the private server on 127.0.0.1:PORT answer `select 1` as root?
answers() {
    if [[ -n $MYSQL_CLIENT ]]; then
        [[ $(run_sql 127.0.0.1 "$1" root '' 'select 1' 2>/dev/null) == 1 ]]
    else
        tcp_open 127.0.0.1 "$1"
    fi
}

# The server binary: mariadbd, else mysqld, also outside $PATH (sbin/libexec are often not in it).
MYSQLD=''
find_server() {
    MYSQLD=''
    local c d
    for c in mariadbd mysqld; do
        if command -v "$c" >/dev/null 2>&1; then
            MYSQLD=$(command -v "$c")
            return 0
        fi
        for d in /usr/sbin /usr/libexec /usr/local/sbin /usr/local/libexec /usr/local/mysql/bin; do
            if [[ -x $d/$c ]]; then
                MYSQLD=$d/$c
                return 0
            fi
        done
    done
    return 1
}

# Debian/Ubuntu, as root: install mariadb-server without letting it start the system service
# (a policy-rc.d that says "no" is honoured by invoke-rc.d and deb-systemd-invoke).
install_mariadb_server() {
    command -v apt-get >/dev/null 2>&1 ||
        die "MariaDB is not installed and there is no apt-get; install mariadb-server (or mysql-server) and rerun"
    log "MariaDB is not installed; installing Debian's mariadb-server"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        POLICY_RC_D_TMP=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\n# Temporary, created by %s/scripts/test.sh\nexit 101\n' "$REPO_ROOT" \
            >"$POLICY_RC_D_TMP"
        chmod 755 "$POLICY_RC_D_TMP"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server
    if [[ -n $POLICY_RC_D_TMP ]]; then
        rm -f -- "$POLICY_RC_D_TMP"
        POLICY_RC_D_TMP=''
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' &&
            return 0
    fi
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 20000))
        if ! tcp_open 127.0.0.1 "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "could not find a free TCP port"
}

# Start a throw-away mariadbd on 127.0.0.1 with root and an empty password; stopped by on_exit.
start_private_server() {
    local init=() user_args=() server_args=() tmp_base port timeout deadline i out start
    if ! find_server; then
        if [[ $(id -u) -eq 0 ]]; then
            install_mariadb_server
            find_client || true
            find_server || die "mariadb-server was installed but no mariadbd/mysqld binary was found"
            # Should the package have started its service anyway and it accepts our URL, use it.
            probe "$DB_HOST" "$DB_PORT" "$DB_USER" "$DB_PASS"
            if [[ $PROBE == ok ]]; then
                log "the freshly installed server at $DB_HOST:$DB_PORT answers: $PROBE_INFO"
                return 0
            fi
        else
            die "nothing answers at $DB_HOST:$DB_PORT and MariaDB is not installed; install mariadb-server (e.g. sudo apt-get install mariadb-server) or set LARS_TEST_MYSQL_URL"
        fi
    fi

    # mariadbd refuses to run as root unless told to; as another user --user is not needed.
    if [[ $(id -u) -eq 0 ]]; then
        user_args=(--user="$(id -un)")
    fi

    # How to create the system tables. MariaDB: its install-db script, with
    # --auth-root-authentication-method=normal so that root@localhost and root@127.0.0.1 have an
    # empty password (the default, socket, refuses TCP logins as root). MySQL 8 has no such
    # script; `mysqld --initialize-insecure` does the same there.
    if "$MYSQLD" --version 2>/dev/null | grep -qi mariadb; then
        for i in mariadb-install-db mysql_install_db; do
            if command -v "$i" >/dev/null 2>&1; then
                init=("$(command -v "$i")" --no-defaults --auth-root-authentication-method=normal
                    --skip-test-db --skip-name-resolve)
                # root@127.0.0.1 exists, so the server need not resolve names.
                server_args=(--skip-name-resolve)
                break
            fi
        done
        ((${#init[@]} > 0)) || die "found $MYSQLD but neither mariadb-install-db nor mysql_install_db"
    else
        init=("$MYSQLD" --no-defaults --initialize-insecure)
    fi

    # The socket path must stay short (108 bytes), so fall back to /tmp for a long $TMPDIR.
    tmp_base=${TMPDIR:-/tmp}
    ((${#tmp_base} <= 60)) || tmp_base=/tmp
    PRIVATE_DIR=$(mktemp -d "$tmp_base/lars-mysql.XXXXXX")
    port=$(free_port)
    log "starting a private MariaDB server: $MYSQLD on 127.0.0.1:$port, data in $PRIVATE_DIR"

    init+=(--datadir="$PRIVATE_DIR/data" "${user_args[@]}")
    if ! "${init[@]}" >"$PRIVATE_DIR/install-db.log" 2>&1; then
        tail -n 30 "$PRIVATE_DIR/install-db.log" >&2 || true
        die "creating the data directory failed: ${init[*]} (log above)"
    fi

    # --no-defaults keeps /etc/mysql out, so the settings that matter to the tests are explicit
    # (utf8mb4 like Debian's configuration). Durability is traded for speed: the data is thrown away.
    "$MYSQLD" --no-defaults \
        --datadir="$PRIVATE_DIR/data" \
        --port="$port" \
        --bind-address=127.0.0.1 \
        --socket="$PRIVATE_DIR/mysqld.sock" \
        --pid-file="$PRIVATE_DIR/mysqld.pid" \
        --tmpdir="$PRIVATE_DIR" \
        --skip-log-bin \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci \
        --innodb-flush-log-at-trx-commit=0 \
        --max-connections=500 \
        "${server_args[@]}" \
        "${user_args[@]}" \
        </dev/null >"$PRIVATE_DIR/mysqld.log" 2>&1 &
    PRIVATE_PID=$!

    # If this script is killed in a way that skips the EXIT trap (SIGKILL), a watchdog stops the
    # server and removes its directory. It holds none of our output open, so CI logs still end.
    (
        set +e
        trap '' INT TERM HUP PIPE
        while kill -0 "$SCRIPT_PID" 2>/dev/null; do sleep 2; done
        kill -TERM "$PRIVATE_PID" 2>/dev/null
        for _ in {1..30}; do kill -0 "$PRIVATE_PID" 2>/dev/null && sleep 1; done
        kill -KILL "$PRIVATE_PID" 2>/dev/null
        rm -rf -- "$PRIVATE_DIR"
    ) </dev/null >/dev/null 2>&1 &
    WATCHDOG_PID=$!

    # Wait (bounded) until it answers a query.
    start=$(now)
    timeout=${LARS_TEST_MYSQL_START_TIMEOUT:-60}
    [[ $timeout =~ ^[0-9]+$ ]] || die "LARS_TEST_MYSQL_START_TIMEOUT must be a number of seconds"
    log "waiting up to ${timeout}s for it to answer"
    deadline=$((SECONDS + timeout))
    while ((SECONDS <= deadline)) && kill -0 "$PRIVATE_PID" 2>/dev/null; do
        if answers "$port"; then
            DB_HOST=127.0.0.1 DB_PORT=$port DB_USER=root DB_PASS=''
            if [[ -n $DB_NAME && -n $MYSQL_CLIENT ]]; then
                out=$(run_sql 127.0.0.1 "$port" root '' "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`" 2>&1) ||
                    die "could not create database '$DB_NAME': $out"
            fi
            LARS_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port${DB_NAME:+/$DB_NAME}"
            log "private MariaDB server is up (pid $PRIVATE_PID) after $(elapsed "$start")s"
            return 0
        fi
        sleep 0.25
    done
    printf '==> last lines of %s:\n' "$PRIVATE_DIR/mysqld.log" >&2
    tail -n 40 "$PRIVATE_DIR/mysqld.log" >&2 || true
    if kill -0 "$PRIVATE_PID" 2>/dev/null; then
        die "the private MariaDB server did not answer within ${timeout}s"
    else
        die "the private MariaDB server exited during start-up"
    fi
}

ensure_mysql() {
    local url_from_env=1
    if [[ -z ${LARS_TEST_MYSQL_URL:-} ]]; then
        url_from_env=0
        LARS_TEST_MYSQL_URL=$DEFAULT_MYSQL_URL
    fi
    parse_mysql_url "$LARS_TEST_MYSQL_URL"
    find_client || true
    if [[ $url_from_env == 1 ]]; then
        log "MySQL for the tests: checking $(redact_url "$LARS_TEST_MYSQL_URL") (from LARS_TEST_MYSQL_URL)"
    else
        log "MySQL for the tests: checking $LARS_TEST_MYSQL_URL (the default; LARS_TEST_MYSQL_URL is not set)"
    fi
    log "client: ${MYSQL_CLIENT:-none installed, only checking that the port accepts connections}"
    probe "$DB_HOST" "$DB_PORT" "$DB_USER" "$DB_PASS"
    case $PROBE in
        ok)
            log "found a server at $DB_HOST:$DB_PORT: $PROBE_INFO"
            ;;
        nothing)
            log "nothing answers at $DB_HOST:$DB_PORT"
            start_private_server
            ;;
        refused)
            if [[ $url_from_env == 1 ]]; then
                # An explicit URL that does not work is a configuration error; do not hide it.
                die "a server listens at $DB_HOST:$DB_PORT but the query as '$DB_USER' failed: $PROBE_INFO"
            fi
            # The default URL: typically a distribution's server whose root only logs in through
            # the Unix socket. Leave it alone and use a private server instead.
            log "a server listens at $DB_HOST:$DB_PORT but rejects the default URL: $PROBE_INFO"
            start_private_server
            ;;
    esac
    export LARS_TEST_MYSQL_URL
    log "LARS_TEST_MYSQL_URL=$(redact_url "$LARS_TEST_MYSQL_URL")"
}

###################################################################################################
# Step 2: formatting, lints, tests, docs.
###################################################################################################

# run_step NAME COMMAND...: run, time and record one step; stop the script at its failure.
run_step() {
    local name=$1 start status=0
    shift
    printf '\n==> %s\n    $' "$name"
    printf ' %q' "$@"
    printf '\n'
    start=$(now)
    "$@" || status=$?
    local took
    took=$(elapsed "$start")
    if ((status == 0)); then
        SUMMARY+=("ok      ${took}s  $name")
        log "ok: $name (${took}s)"
    else
        SUMMARY+=("FAILED  ${took}s  $name")
        printf '\n==> FAILED: %s (exit status %d after %ss)\n' "$name" "$status" "$took" >&2
        exit "$status"
    fi
}

db_start=$(now)
ensure_mysql
SUMMARY+=("ok      $(elapsed "$db_start")s  MySQL server ($(redact_url "$LARS_TEST_MYSQL_URL"))")

if [[ ${LARS_TEST_ONLY_DB:-0} == 1 ]]; then
    out=''
    if [[ -n $MYSQL_CLIENT ]]; then
        out=$(run_sql "$DB_HOST" "$DB_PORT" "$DB_USER" "$DB_PASS" 'select @@port, version(), current_user()')
        log "query result: $out"
    fi
    log "LARS_TEST_ONLY_DB=1: stopping after the MySQL step"
    printf '%s\n' "$LARS_TEST_MYSQL_URL"
    exit 0
fi

# The toolchain: cargo is required; rustfmt and clippy are added when rustup can do it (a fresh
# machine with rustup's minimal profile lacks them).
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs) and rerun"
for component in rustfmt clippy; do
    subcommand=${component/rustfmt/fmt}
    if ! cargo "$subcommand" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
        log "installing the $component component"
        rustup component add "$component"
    fi
done

# --locked when Cargo.lock is committed (or when this is not a git checkout but has one).
LOCKED=()
if [[ -f Cargo.lock ]]; then
    if ! command -v git >/dev/null 2>&1 || ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        LOCKED=(--locked)
    elif git ls-files --error-unmatch Cargo.lock >/dev/null 2>&1; then
        LOCKED=(--locked)
    fi
fi

run_step "format (cargo fmt)" cargo fmt --all -- --check
run_step "lints (cargo clippy)" cargo clippy --workspace --all-targets "${LOCKED[@]}" -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    run_step "tests (cargo nextest)" cargo nextest run --workspace --no-fail-fast "${LOCKED[@]}" "$@"
else
    run_step "tests (cargo test)" cargo test --workspace "${LOCKED[@]}" "$@"
fi
run_step "doc tests (cargo test --doc)" cargo test --workspace --doc "${LOCKED[@]}"
run_step "docs (cargo doc)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps "${LOCKED[@]}"
