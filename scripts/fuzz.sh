#!/usr/bin/env bash
# Fuzz the wire decoders (wire/fuzz, cargo-fuzz + libFuzzer) for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]     # SECONDS per target, default 60
#
# It
#   1. installs cargo-fuzz (`cargo install cargo-fuzz --locked`) if it is missing;
#   2. picks a toolchain: the rustup `nightly` toolchain if there is one, else the default (stable)
#      one with RUSTC_BOOTSTRAP=1, which makes stable accept the nightly-only flags (-Z sanitizer
#      and friends) that cargo-fuzz passes; it says which;
#   3. builds the targets once, with AddressSanitizer and debug assertions, so that an arithmetic
#      overflow is a crash as it is in debug builds and tests;
#   4. runs each target (frame_decoder, datagram) for SECONDS seconds on its corpus
#      (wire/fuzz/corpus/TARGET, grown by the run, not committed) plus the committed seeds
#      (wire/fuzz/seeds/TARGET: the golden frames of wire/tests/golden.rs), and prints the
#      executions and time of each run;
#   5. exits non-zero if any target crashed. The crashing input is kept in
#      wire/fuzz/artifacts/TARGET/ and the full log in wire/fuzz/logs/TARGET.log; reproduce with
#        cd wire && cargo +nightly fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...
#
# Environment: FUZZ_TARGETS="frame_decoder datagram" to run a subset; FUZZ_ARGS for extra
# libFuzzer flags (e.g. FUZZ_ARGS="-jobs=2 -workers=2").

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 2
}

SECONDS_PER_TARGET=${1:-60}
[[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]] ||
    die "usage: scripts/fuzz.sh [SECONDS per target, a positive integer], got '$SECONDS_PER_TARGET'"
read -r -a TARGETS <<<"${FUZZ_TARGETS:-frame_decoder datagram}"
read -r -a EXTRA_ARGS <<<"${FUZZ_ARGS:-}"
# Inputs up to 70 000 bytes: room for a frame of the largest allowed size (65 535 bytes) and more.
MAX_LEN=70000

command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs) and rerun"

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz is not installed; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
log "$(cargo fuzz --version)"

TOOLCHAIN=()
if cargo +nightly --version >/dev/null 2>&1; then
    TOOLCHAIN=(+nightly)
    log "toolchain: $(cargo +nightly --version)"
else
    warn "no nightly toolchain found (rustup toolchain install nightly); using the default" \
        "toolchain with RUSTC_BOOTSTRAP=1 so that it accepts cargo-fuzz's -Z flags"
    export RUSTC_BOOTSTRAP=1
    log "toolchain: $(cargo --version) with RUSTC_BOOTSTRAP=1"
fi

cd wire
mkdir -p fuzz/logs

log "building the fuzz targets (AddressSanitizer, debug assertions; log: wire/fuzz/logs/build.log)"
if ! cargo "${TOOLCHAIN[@]}" fuzz build --debug-assertions >fuzz/logs/build.log 2>&1; then
    tail -n 40 fuzz/logs/build.log >&2
    die "building the fuzz targets failed"
fi

SUMMARY=()
FAILED=()
for target in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    corpora=("fuzz/corpus/$target")
    [[ -d fuzz/seeds/$target ]] && corpora+=("fuzz/seeds/$target")
    log_file="fuzz/logs/$target.log"
    log "fuzzing $target for ${SECONDS_PER_TARGET}s (log: wire/$log_file)"
    status=0
    cargo "${TOOLCHAIN[@]}" fuzz run --debug-assertions "$target" "${corpora[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -print_final_stats=1 \
        "${EXTRA_ARGS[@]}" >"$log_file" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -n 1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log_file" | tail -n 1)
    if ((status == 0)); then
        SUMMARY+=("ok       $target: ${execs:-?} executions in ${took:-?}s")
    else
        FAILED+=("$target")
        SUMMARY+=("CRASHED  $target: exit status $status after ${execs:-?} executions")
        printf '\n==> %s crashed; the end of its log:\n' "$target" >&2
        tail -n 40 "$log_file" >&2
        find "fuzz/artifacts/$target" -type f -printf '    wire/%p\n' >&2 2>/dev/null || true
    fi
done

printf '\n==> Summary (%ss per target)\n' "$SECONDS_PER_TARGET"
printf '    %s\n' "${SUMMARY[@]}"
if ((${#FAILED[@]} > 0)); then
    printf '==> FAILED: %s\n' "${FAILED[*]}" >&2
    exit 1
fi
log "no crash"
