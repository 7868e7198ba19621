#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30) and fails if any
# of them finds a crash (a panic, an ASan report, a timeout or an out-of-memory).
#
#   scripts/fuzz.sh [SECONDS]            all targets, one after another
#   FUZZ_TARGETS="query ws_frames" scripts/fuzz.sh 10
#   FUZZ_JOBS=2 scripts/fuzz.sh 15       two targets at a time (libFuzzer uses one core)
#   scripts/fuzz.sh --build-only         builds the targets, fuzzes nothing
#
# Needs only the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly
# sanitizer flags. cargo-fuzz is installed on first use. The committed seeds in
# fuzz/corpus/<target>/ are read, never written: what libFuzzer discovers goes to a
# scratch corpus that is deleted afterwards (set FUZZ_KEEP_CORPUS=DIR to keep it).
# fuzz/dict/<target>.dict, when present, is passed as a libFuzzer dictionary.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

build_only=false
if [ "${1:-}" = --build-only ]; then
    build_only=true
    shift
fi
seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]  (a whole number of seconds per target, default 30)" >&2
    exit 2
fi

jobs="${FUZZ_JOBS:-1}"
if ! [[ "$jobs" =~ ^[0-9]+$ ]] || [ "$jobs" -lt 1 ]; then
    echo "FUZZ_JOBS must be a whole number of targets to fuzz at once (at least 1)" >&2
    exit 2
fi

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

all_targets=$(cargo fuzz list)
targets="${FUZZ_TARGETS:-$all_targets}"

echo "== building fuzz targets" >&2
cargo fuzz build
if "$build_only"; then
    exit 0
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kakigori-fuzz.XXXXXX")
# journal_recover writes its journals here (tmpfs when available, see the target).
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    journal_tmp=$(mktemp -d /dev/shm/kakigori-fuzz.XXXXXX)
else
    journal_tmp="$scratch/journal"
    mkdir -p "$journal_tmp"
fi
trap 'rm -rf "$scratch" "$journal_tmp"' EXIT
export KAKIGORI_FUZZ_TMP="$journal_tmp"

# Fuzzes one target; leaves its exit status in $scratch/$target.status, its summary line
# in $scratch/$target.summary and its log in $scratch/$target.log, to be reported once
# every target is done.
fuzz_target() {
    local target=$1 corpus log status=0 execs outcome dict=()
    corpus="$scratch/corpus/$target"
    [ -n "${FUZZ_KEEP_CORPUS:-}" ] && corpus="$FUZZ_KEEP_CORPUS/$target"
    mkdir -p "$corpus" "fuzz/corpus/$target"
    log="$scratch/$target.log"
    echo "== fuzzing $target for ${seconds}s" >&2
    [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
    # The first corpus directory is where libFuzzer writes; the seeds come second.
    cargo fuzz run "$target" "$corpus" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)
    fi
    if [ -z "$execs" ]; then
        # A crash ends the run before the final stats: take the last progress line.
        execs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    fi
    outcome=ok
    [ "$status" -ne 0 ] && outcome="CRASH (exit $status)"
    printf '%-16s %12s execs  %s\n' "$target" "${execs:-?}" "$outcome" >"$scratch/$target.summary"
    echo "$status" >"$scratch/$target.status"
}

# At most $jobs targets at once: `wait -n` returns when any one of them ends.
running=0
for target in $targets; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_target "$target" &
    running=$((running + 1))
done
wait

failed=()
for target in $targets; do
    if [ "$(cat "$scratch/$target.status" 2>/dev/null)" != 0 ]; then
        failed+=("$target")
        echo "---- $target failed; the end of its log:" >&2
        grep -E "panicked at|ERROR: |SUMMARY|Test unit written|artifact_prefix|Base64" "$scratch/$target.log" >&2 || true
        tail -n 40 "$scratch/$target.log" >&2 || true
    fi
done

echo
echo "== fuzz summary (${seconds}s per target)"
for target in $targets; do
    cat "$scratch/$target.summary" 2>/dev/null || printf '%-16s did not finish\n' "$target"
done
if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
