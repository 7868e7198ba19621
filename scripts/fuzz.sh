#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30) and fails if any
# of them finds a crash (a panic, an ASan report, a timeout or an out-of-memory).
#
#   scripts/fuzz.sh [SECONDS]            all targets
#   FUZZ_TARGETS="query ws_frames" scripts/fuzz.sh 10
#
# Needs only the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly
# sanitizer flags. cargo-fuzz is installed on first use. The committed seeds in
# fuzz/corpus/<target>/ are read, never written: what libFuzzer discovers goes to a
# scratch corpus that is deleted afterwards (set FUZZ_KEEP_CORPUS=DIR to keep it).
# fuzz/dict/<target>.dict, when present, is passed as a libFuzzer dictionary.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]  (a whole number of seconds per target, default 30)" >&2
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

failed=()
summary=()
for target in $targets; do
    corpus="$scratch/corpus/$target"
    [ -n "${FUZZ_KEEP_CORPUS:-}" ] && corpus="$FUZZ_KEEP_CORPUS/$target"
    mkdir -p "$corpus" "fuzz/corpus/$target"
    log="$scratch/$target.log"
    echo "== fuzzing $target for ${seconds}s" >&2
    status=0
    dict=()
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
    execs="${execs:-?}"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        summary+=("$(printf '%-16s %12s execs  CRASH (exit %d)' "$target" "$execs" "$status")")
        echo "---- $target failed; the end of its log:" >&2
        grep -E "panicked at|ERROR: |SUMMARY|Test unit written|artifact_prefix|Base64" "$log" >&2 || true
        tail -n 40 "$log" >&2
    else
        summary+=("$(printf '%-16s %12s execs  ok' "$target" "$execs")")
    fi
done

echo
echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
