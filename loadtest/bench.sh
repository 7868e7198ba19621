#!/usr/bin/env bash
# Run every kakigori-loadtest scenario against a fresh one-core server and
# keep the JSON reports, text reports and SVG plots.
#
#   loadtest/bench.sh [SERVER_BIN] [OUT_DIR]
#
# Server pinned to CPU 0 (--cores 1), harness pinned to CPU 1. Environment:
#   LT=path/to/kakigori-loadtest  PORT=18080  D=<seconds per scenario, default 10>
#   KAKIGORI_STAFF_TOKEN=...      (default: a fixed bench token)
# Exit code: number of scenarios that failed (violations or errors).
set -uo pipefail
cd "$(dirname "$0")/.."
SERVER_BIN=${1:-target/release/kakigori}
OUT=${2:-/tmp/kakigori-bench-$(date +%Y%m%d-%H%M%S)}
LT=${LT:-target/release/kakigori-loadtest}
PORT=${PORT:-18080}
D=${D:-10}
TOKEN=${KAKIGORI_STAFF_TOKEN:-bench-staff-token-0123456789}
URL=http://127.0.0.1:$PORT

mkdir -p "$OUT/data"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
KAKIGORI_STAFF_TOKEN=$TOKEN taskset -c 0 "$SERVER_BIN" --cores 1 --listen "127.0.0.1:$PORT" \
    --data-dir "$OUT/data" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

failed=0
run() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    if ! taskset -c 1 "$LT" "$@" --url "$URL" --server-pid "$SERVER" --json --quiet \
        --plot "$OUT/$name.svg" >"$OUT/$name.json" 2>"$OUT/$name.txt"; then
        echo "   FAIL (see $OUT/$name.txt)" >&2
        failed=$((failed + 1))
    fi
    grep -E '^(  [a-zA-Z0-9]|harness|server|RESULT)' "$OUT/$name.txt" | head -40 >&2
}

run rest-mix    rest --duration-s "$D" --connections 16
run rest-reads  rest --duration-s "$D" --connections 4 --mix menu:1,get:1
run rest-idem   rest --duration-s "$D" --connections 16 --mix order:1 --idempotency-pct 50 --idem-repeat-pct 25
run meter       meter --duration-s "$D" --rooms 4 --clients 250 --probe-rooms 1
run meter-hot   meter --duration-s "$D" --rooms 1 --clients 2000 --probe-rooms 1
run idle        idle --duration-s "$D" --connections 15000
run lobby       lobby --duration-s "$D" --groups 50
run confirm     confirm --duration-s "$D" --concurrency 8
run festival    festival --duration-s "$((D * 3))" --rate 5 --staff-token "$TOKEN"
echo "reports in $OUT" >&2
exit "$failed"
